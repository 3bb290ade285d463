"""Real AWS clients against a real `kms serve` (run by `cargo xtask aws-clients`).

The environment names the server and the credentials as a user would: AWS_ENDPOINT_URL_KMS,
AWS_SHARED_CREDENTIALS_FILE (the bootstrap admin's <data_dir>/aws-credentials) and
AWS_DEFAULT_REGION. KMS_BACKEND names the backend the server runs on (`local` or `openbao`),
for the messages only: the same checks run on both. Every check raises on failure; the script
exits non-zero then.
"""

import base64
import configparser
import io
import logging
import os
import subprocess
import sys
import tempfile

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["AWS_ENDPOINT_URL_KMS"]
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})


def kms(**kwargs):
    return boto3.client("kms", config=NO_RETRIES, **kwargs)


def expect_error(name, call, **kwargs):
    """The call fails with AWS error `name` and a 4xx status."""
    try:
        call(**kwargs)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        assert code == name, f"expected {name}, got {code} ({e})"
        assert 400 <= status < 500, f"{name} came with status {status}"
        assert e.response["ResponseMetadata"].get("RequestId"), "no x-amzn-RequestId"
        return e
    raise AssertionError(f"expected {name}, the call succeeded")


def test_boto3_operations():
    client = kms()
    key = client.create_key(Description="boto3", Tags=[{"TagKey": "team", "TagValue": "a"}])["KeyMetadata"]
    arn, key_id = key["Arn"], key["KeyId"]
    assert arn == f"arn:aws:kms:us-east-1:000000000000:key/{key_id}", arn
    assert key["KeyState"] == "Enabled" and key["Enabled"]
    context = {"purpose": "boto3"}

    encrypted = client.encrypt(KeyId=arn, Plaintext=b"hello", EncryptionContext=context)
    assert encrypted["KeyId"] == arn
    decrypted = client.decrypt(CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext=context)
    assert decrypted["Plaintext"] == b"hello" and decrypted["KeyId"] == arn
    decrypted = client.decrypt(CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext=context, KeyId=key_id)
    assert decrypted["Plaintext"] == b"hello"
    expect_error("InvalidCiphertextException", client.decrypt,
                 CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext={"purpose": "other"})
    expect_error("InvalidCiphertextException", client.decrypt, CiphertextBlob=encrypted["CiphertextBlob"])

    data_key = client.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)
    assert len(data_key["Plaintext"]) == 32 and data_key["KeyId"] == arn
    opened = client.decrypt(CiphertextBlob=data_key["CiphertextBlob"], EncryptionContext=context)
    assert opened["Plaintext"] == data_key["Plaintext"]
    for n in (1, 16, 64, 1024):
        assert len(client.generate_data_key(KeyId=arn, NumberOfBytes=n)["Plaintext"]) == n
    wrapped = client.generate_data_key_without_plaintext(KeyId=arn, KeySpec="AES_128")
    assert "Plaintext" not in wrapped
    assert len(client.decrypt(CiphertextBlob=wrapped["CiphertextBlob"])["Plaintext"]) == 16
    assert len(client.generate_random(NumberOfBytes=100)["Plaintext"]) == 100

    other = client.create_key(Description="other")["KeyMetadata"]["Arn"]
    moved = client.re_encrypt(CiphertextBlob=encrypted["CiphertextBlob"], SourceEncryptionContext=context,
                              DestinationKeyId=other, DestinationEncryptionContext={"moved": "yes"})
    assert moved["SourceKeyId"] == arn and moved["KeyId"] == other
    expect_error("IncorrectKeyException", client.decrypt, CiphertextBlob=moved["CiphertextBlob"], KeyId=arn)
    assert client.decrypt(CiphertextBlob=moved["CiphertextBlob"],
                          EncryptionContext={"moved": "yes"})["Plaintext"] == b"hello"

    described = client.describe_key(KeyId=arn)["KeyMetadata"]
    assert described["Description"] == "boto3" and described["KeyUsage"] == "ENCRYPT_DECRYPT"
    client.update_key_description(KeyId=key_id, Description="changed")
    assert client.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "changed"
    client.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "test"}])
    client.untag_resource(KeyId=key_id, TagKeys=["team"])
    assert client.list_resource_tags(KeyId=key_id)["Tags"] == [{"TagKey": "env", "TagValue": "test"}]
    assert client.rotate_key_on_demand(KeyId=key_id)["KeyId"] == arn
    assert not client.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"]
    client.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=180)
    status = client.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 180, status
    client.disable_key_rotation(KeyId=key_id)
    # What was encrypted before the rotation still decrypts.
    assert client.decrypt(CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext=context)["Plaintext"] == b"hello"
    assert '"kms:*"' in client.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]

    client.disable_key(KeyId=key_id)
    assert client.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    expect_error("DisabledException", client.encrypt, KeyId=key_id, Plaintext=b"x")
    expect_error("DisabledException", client.generate_data_key, KeyId=key_id, KeySpec="AES_256")
    client.enable_key(KeyId=key_id)
    scheduled = client.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert scheduled["KeyState"] == "PendingDeletion" and scheduled["PendingWindowInDays"] == 7
    expect_error("KMSInvalidStateException", client.encrypt, KeyId=key_id, Plaintext=b"x")
    expect_error("KMSInvalidStateException", client.decrypt, CiphertextBlob=encrypted["CiphertextBlob"],
                 EncryptionContext=context)
    client.cancel_key_deletion(KeyId=key_id)
    client.enable_key(KeyId=key_id)
    client.encrypt(KeyId=key_id, Plaintext=b"x")

    expect_error("NotFoundException", client.describe_key, KeyId="no-such-key")
    expect_error("NotFoundException", client.encrypt, KeyId="arn:aws:kms:us-east-1:000000000000:key/none", Plaintext=b"x")
    expect_error("ValidationException", client.encrypt, KeyId=key_id, Plaintext=b"x" * 4097)
    expect_error("ValidationException", client.schedule_key_deletion, KeyId=key_id, PendingWindowInDays=3)
    err = expect_error("UnsupportedOperationException", client.create_grant, KeyId=key_id,
                       GranteePrincipal="arn:aws:iam::000000000000:root", Operations=["Decrypt"])
    assert "CreateGrant" in str(err)
    print("boto3: every operation and error name: ok")


def test_boto3_paginators():
    client = kms()
    created = {client.create_key()["KeyMetadata"]["KeyId"] for _ in range(5)}
    pages = list(client.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}))
    assert len(pages) >= 3, len(pages)
    ids = [k["KeyId"] for page in pages for k in page["Keys"]]
    assert len(ids) == len(set(ids)), "a key came twice"
    assert created <= set(ids)
    print(f"boto3: list_keys paginator, {len(pages)} pages: ok")


def test_boto3_aliases():
    client = kms()
    first = client.create_key()["KeyMetadata"]["Arn"]
    second = client.create_key()["KeyMetadata"]["Arn"]
    client.create_alias(AliasName="alias/boto3-orders", TargetKeyId=first)
    expect_error("AlreadyExistsException", client.create_alias, AliasName="alias/boto3-orders", TargetKeyId=second)
    expect_error("NotFoundException", client.create_alias, AliasName="alias/boto3-x", TargetKeyId="missing-key")
    alias_arn = "arn:aws:kms:us-east-1:000000000000:alias/boto3-orders"
    for key_ref in ("alias/boto3-orders", alias_arn):
        sealed = client.encrypt(KeyId=key_ref, Plaintext=b"via alias")
        assert sealed["KeyId"] == first
        assert client.decrypt(CiphertextBlob=sealed["CiphertextBlob"], KeyId=key_ref)["Plaintext"] == b"via alias"
    client.update_alias(AliasName="alias/boto3-orders", TargetKeyId=second)
    assert client.describe_key(KeyId="alias/boto3-orders")["KeyMetadata"]["Arn"] == second
    for n in range(5):
        client.create_alias(AliasName=f"alias/boto3-page-{n}", TargetKeyId=second)
    pages = list(client.get_paginator("list_aliases").paginate(PaginationConfig={"PageSize": 2}))
    names = [a["AliasName"] for page in pages for a in page["Aliases"]]
    assert len(pages) >= 3 and names == sorted(names) and len(names) == len(set(names)), names
    assert {f"alias/boto3-page-{n}" for n in range(5)} | {"alias/boto3-orders"} <= set(names)
    of_second = client.list_aliases(KeyId=second)["Aliases"]
    assert all(a["TargetKeyId"] == second.rsplit("/", 1)[1] for a in of_second) and len(of_second) == 6
    client.delete_alias(AliasName="alias/boto3-orders")
    expect_error("NotFoundException", client.describe_key, KeyId="alias/boto3-orders")
    print(f"boto3: aliases, list_aliases paginator ({len(pages)} pages): ok")


def test_signatures_are_checked():
    parser = configparser.ConfigParser()
    parser.read(os.environ["AWS_SHARED_CREDENTIALS_FILE"])
    access_key = parser["default"]["aws_access_key_id"]
    wrong = kms(aws_access_key_id=access_key, aws_secret_access_key="not-the-secret")
    expect_error("InvalidSignatureException", wrong.list_keys)
    unknown = kms(aws_access_key_id="AKIAUNKNOWNKEY000000", aws_secret_access_key="x")
    expect_error("UnrecognizedClientException", unknown.list_keys)
    other_region = kms(region_name="eu-west-1")
    expect_error("InvalidSignatureException", other_region.list_keys)
    print("boto3: wrong secret, unknown key, wrong region refused: ok")


def aws_cli_run(*args):
    """`aws kms ARGS` against the server, whatever its exit status."""
    command = [sys.executable, "-S", "-m", "awscli", "kms", *args, "--endpoint-url", ENDPOINT]
    return subprocess.run(command, capture_output=True, check=False)


def aws_cli(*args, binary=False):
    result = aws_cli_run(*args)
    if result.returncode != 0:
        raise AssertionError(f"aws kms {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout if binary else result.stdout.decode().strip()


def test_aws_cli():
    key_id = aws_cli("create-key", "--description", "cli", "--query", "KeyMetadata.KeyId", "--output", "text")
    aws_cli("create-alias", "--alias-name", "alias/cli-probe", "--target-key-id", key_id)
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "plain.bin")
        sealed = os.path.join(tmp, "sealed.bin")
        content = os.urandom(3000)
        with open(plain, "wb") as f:
            f.write(content)
        blob = aws_cli("encrypt", "--key-id", "alias/cli-probe", "--plaintext", f"fileb://{plain}",
                       "--encryption-context", "purpose=cli", "--query", "CiphertextBlob", "--output", "text")
        with open(sealed, "wb") as f:
            f.write(base64.b64decode(blob))
        opened = aws_cli("decrypt", "--ciphertext-blob", f"fileb://{sealed}", "--encryption-context", "purpose=cli",
                         "--query", "Plaintext", "--output", "text")
        assert base64.b64decode(opened) == content
        refused = aws_cli_run("decrypt", "--ciphertext-blob", f"fileb://{sealed}")
        assert refused.returncode != 0 and b"InvalidCiphertextException" in refused.stderr, refused.stderr
    listed = aws_cli("list-keys", "--query", "Keys[].KeyId", "--output", "text")
    assert key_id in listed.split()
    aliases = aws_cli("list-aliases", "--query", "Aliases[].AliasName", "--output", "text")
    assert "alias/cli-probe" in aliases.split()
    print("aws cli: create-key, create-alias, encrypt a file with --encryption-context, decrypt it: ok")


def test_aws_cli_byok():
    """The AWS CLI's documented import procedure: create-key --origin EXTERNAL,
    get-parameters-for-import, wrap 32 random bytes with `openssl pkeyutl` (RSAES-OAEP, SHA-256,
    MGF1-SHA-256), import-key-material from files, then encrypt and decrypt with the key.
    Without openssl on the machine the wrap falls back to Python's `cryptography`."""
    import shutil
    backend = os.environ.get("KMS_BACKEND", "local")
    created = aws_cli_run("create-key", "--origin", "EXTERNAL", "--query", "KeyMetadata.KeyId", "--output", "text")
    if created.returncode != 0:
        assert b"UnsupportedOperationException" in created.stderr, created.stderr
        print(f"aws cli byok: skipped, the {backend} backend does not import key material")
        return
    key_id = created.stdout.decode().strip()
    state = aws_cli("describe-key", "--key-id", key_id, "--query", "KeyMetadata.KeyState", "--output", "text")
    assert state == "PendingImport", state
    with tempfile.TemporaryDirectory() as tmp:
        path = lambda name: os.path.join(tmp, name)  # noqa: E731
        answer = aws_cli("get-parameters-for-import", "--key-id", key_id, "--wrapping-algorithm", "RSAES_OAEP_SHA_256",
                         "--wrapping-key-spec", "RSA_4096", "--query", "[PublicKey,ImportToken]", "--output", "text")
        public_key, token = answer.split()
        with open(path("WrappingPublicKey.bin"), "wb") as f:
            f.write(base64.b64decode(public_key))
        with open(path("ImportToken.bin"), "wb") as f:
            f.write(base64.b64decode(token))
        material = os.urandom(32)
        with open(path("PlaintextKeyMaterial.bin"), "wb") as f:
            f.write(material)
        openssl = shutil.which("openssl")
        if openssl:
            subprocess.run([openssl, "pkeyutl", "-encrypt", "-in", path("PlaintextKeyMaterial.bin"),
                            "-out", path("EncryptedKeyMaterial.bin"), "-inkey", path("WrappingPublicKey.bin"),
                            "-keyform", "DER", "-pubin", "-pkeyopt", "rsa_padding_mode:oaep",
                            "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256"],
                           check=True, capture_output=True)
            wrapper = "openssl pkeyutl"
        else:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
            public = serialization.load_der_public_key(base64.b64decode(public_key))
            oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
            with open(path("EncryptedKeyMaterial.bin"), "wb") as f:
                f.write(public.encrypt(material, oaep))
            wrapper = "cryptography (no openssl here)"
        import_args = ("import-key-material", "--key-id", key_id,
                       "--encrypted-key-material", f"fileb://{path('EncryptedKeyMaterial.bin')}",
                       "--import-token", f"fileb://{path('ImportToken.bin')}",
                       "--expiration-model", "KEY_MATERIAL_DOES_NOT_EXPIRE")
        aws_cli(*import_args)
        # The token imports once.
        again = aws_cli_run(*import_args)
        assert again.returncode != 0 and b"InvalidImportTokenException" in again.stderr, again.stderr
        state = aws_cli("describe-key", "--key-id", key_id, "--query", "KeyMetadata.[KeyState,Origin,ExpirationModel]",
                        "--output", "text")
        assert state.split() == ["Enabled", "EXTERNAL", "KEY_MATERIAL_DOES_NOT_EXPIRE"], state
        content = os.urandom(1000)
        with open(path("plain.bin"), "wb") as f:
            f.write(content)
        blob = aws_cli("encrypt", "--key-id", key_id, "--plaintext", f"fileb://{path('plain.bin')}",
                       "--encryption-context", "purpose=byok-cli", "--query", "CiphertextBlob", "--output", "text")
        with open(path("sealed.bin"), "wb") as f:
            f.write(base64.b64decode(blob))
        opened = aws_cli("decrypt", "--ciphertext-blob", f"fileb://{path('sealed.bin')}",
                         "--encryption-context", "purpose=byok-cli", "--query", "Plaintext", "--output", "text")
        assert base64.b64decode(opened) == content
    aws_cli("delete-imported-key-material", "--key-id", key_id)
    state = aws_cli("describe-key", "--key-id", key_id, "--query", "KeyMetadata.KeyState", "--output", "text")
    assert state == "PendingImport", state
    print(f"aws cli byok: create-key --origin EXTERNAL, material wrapped by {wrapper}, import-key-material, "
          f"encrypt/decrypt, token reuse refused, delete-imported-key-material: ok ({backend})")


def test_encryption_sdk():
    import aws_encryption_sdk
    from aws_encryption_sdk import CommitmentPolicy
    from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError
    from cryptography.exceptions import InvalidTag

    arn = kms().create_key(Description="esdk")["KeyMetadata"]["Arn"]
    sdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    strict = aws_encryption_sdk.StrictAwsKmsMasterKeyProvider(key_ids=[arn])
    discovery = aws_encryption_sdk.DiscoveryAwsKmsMasterKeyProvider()
    context = {"purpose": "esdk", "tenant": "t1"}
    data = os.urandom(10 * 1024 * 1024)

    sealed = io.BytesIO()
    with sdk.stream(mode="e", source=io.BytesIO(data), key_provider=strict, encryption_context=context) as encryptor:
        for chunk in encryptor:
            sealed.write(chunk)
    message = sealed.getvalue()
    for provider in (strict, discovery):
        opened = io.BytesIO()
        with sdk.stream(mode="d", source=io.BytesIO(message), key_provider=provider) as decryptor:
            for chunk in decryptor:
                opened.write(chunk)
            header = decryptor.header
        assert opened.getvalue() == data
        assert all(header.encryption_context[k] == v for k, v in context.items())
        assert [k.key_provider.key_info for k in header.encrypted_data_keys] == [arn.encode()]

    tampered = bytearray(message)
    tampered[len(tampered) // 2] ^= 0x01
    # The SDK logs a traceback ("Error on closing") when a stream is closed mid-message, which
    # a refused message always is: expected here, so not printed.
    sdk_log = logging.getLogger("aws_encryption_sdk")
    level = sdk_log.level
    sdk_log.setLevel(logging.CRITICAL)
    try:
        sdk.decrypt(source=bytes(tampered), key_provider=strict)
    except (AWSEncryptionSDKClientError, InvalidTag):  # a frame's tag, or the header's
        pass
    else:
        raise AssertionError("a tampered message decrypted")
    finally:
        sdk_log.setLevel(level)
    print("aws encryption sdk: 10 MiB stream, strict and discovery providers, tampering refused: ok")


def test_boto3_byok():
    """BYOK the AWS way: an EXTERNAL key, material made here (not by kms) wrapped with
    `cryptography`'s RSAES-OAEP-SHA-256 under the returned public key, imported, used, deleted.
    Skipped, saying so, on a backend that answers CreateKey Origin=EXTERNAL with
    UnsupportedOperationException."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    backend = os.environ.get("KMS_BACKEND", "local")
    client = kms()
    try:
        key = client.create_key(Origin="EXTERNAL", Description="byok")["KeyMetadata"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "UnsupportedOperationException":
            raise
        print(f"boto3 byok: skipped, the {backend} backend does not import key material "
              f"({e.response['Error']['Message']})")
        return
    arn = key["Arn"]
    assert key["Origin"] == "EXTERNAL" and key["KeyState"] == "PendingImport" and not key["Enabled"], key
    expect_error("KMSInvalidStateException", client.encrypt, KeyId=arn, Plaintext=b"x")
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)

    def parameters(spec="RSA_3072"):
        params = client.get_parameters_for_import(
            KeyId=arn, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec=spec)
        assert params["KeyId"] == arn, params["KeyId"]
        public = serialization.load_der_public_key(params["PublicKey"])
        assert public.key_size == int(spec.split("_")[1]), public.key_size
        left = params["ParametersValidTo"].timestamp() - __import__("time").time()
        assert 23 * 3600 < left <= 24 * 3600 + 60, left
        return params, public

    for algorithm, spec in [("RSAES_OAEP_SHA_1", "RSA_3072"), ("RSAES_PKCS1_V1_5", "RSA_4096"),
                            ("RSAES_OAEP_SHA_256", "RSA_2048")]:
        expect_error("UnsupportedOperationException", client.get_parameters_for_import,
                     KeyId=arn, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)

    material = os.urandom(32)
    params, public = parameters("RSA_3072")
    wrapped = public.encrypt(material, oaep)
    no_expiry = {"ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    expect_error("InvalidImportTokenException", client.import_key_material, KeyId=arn,
                 ImportToken=b"not a token" * 8, EncryptedKeyMaterial=wrapped, **no_expiry)
    expect_error("IncorrectKeyMaterialException", client.import_key_material, KeyId=arn,
                 ImportToken=params["ImportToken"], EncryptedKeyMaterial=public.encrypt(os.urandom(16), oaep),
                 **no_expiry)
    params, public = parameters("RSA_4096")
    client.import_key_material(KeyId=arn, ImportToken=params["ImportToken"],
                               EncryptedKeyMaterial=public.encrypt(material, oaep), **no_expiry)
    described = client.describe_key(KeyId=arn)["KeyMetadata"]
    assert described["KeyState"] == "Enabled" and described["Origin"] == "EXTERNAL", described
    context = {"purpose": "byok"}
    blob = client.encrypt(KeyId=arn, Plaintext=b"brought my own key", EncryptionContext=context)["CiphertextBlob"]
    assert client.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == b"brought my own key"

    client.delete_imported_key_material(KeyId=arn)
    assert client.describe_key(KeyId=arn)["KeyMetadata"]["KeyState"] == "PendingImport"
    expect_error("KMSInvalidStateException", client.decrypt, CiphertextBlob=blob, EncryptionContext=context)
    # Different material never goes into a key that had material; the same material does.
    params, public = parameters()
    expect_error("IncorrectKeyMaterialException", client.import_key_material, KeyId=arn,
                 ImportToken=params["ImportToken"], EncryptedKeyMaterial=public.encrypt(os.urandom(32), oaep),
                 **no_expiry)
    params, public = parameters()
    client.import_key_material(KeyId=arn, ImportToken=params["ImportToken"],
                               EncryptedKeyMaterial=public.encrypt(material, oaep), **no_expiry)
    assert client.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == b"brought my own key"
    # Material on a key kms made is refused.
    own = client.create_key()["KeyMetadata"]["Arn"]
    expect_error("UnsupportedOperationException", client.get_parameters_for_import, KeyId=own,
                 WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_3072")
    print(f"boto3 byok: external key, OAEP-SHA-256 wrapped import, round trip, delete, re-import: ok ({backend})")


if __name__ == "__main__":
    test_signatures_are_checked()
    test_boto3_operations()
    test_boto3_paginators()
    test_boto3_aliases()
    test_boto3_byok()
    test_aws_cli()
    test_aws_cli_byok()
    test_encryption_sdk()
    print(f"all AWS client tests passed on the {os.environ.get('KMS_BACKEND', 'local')} backend")

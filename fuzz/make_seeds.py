"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/) from the published
known-answer vectors in docs/vectors, so the fuzzers start from real, valid inputs.

Run from the workspace root: python3 fuzz/make_seeds.py. Files are named by the SHA-1 of
their content, as libFuzzer names the inputs it keeps; re-running writes the same files.
"""
import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
VECTORS = ROOT / "docs" / "vectors"
CORPUS = ROOT / "fuzz" / "corpus"


def cases(name):
    return json.loads((VECTORS / name).read_text())["cases"]


def seeds():
    envelopes = [bytes.fromhex(c["envelope"]) for f in ("envelope-v1.json", "envelope-v2.json") for c in cases(f)]
    streams = [bytes.fromhex(c["stream"]) for c in cases("stream-v1.json")]
    headers = [bytes.fromhex(c["header"]) for c in cases("stream-v1.json")]
    # stream_decrypt reads its first two bytes as (control, size) to build a stream of its own:
    # a few short controls exercise that path from the start.
    controls = [bytes([0, 5]), bytes([1, 40, 0x10, 0xFF]), bytes([6, 200])]
    return {
        "envelope_open": envelopes,
        "stream_header": headers + streams,
        "stream_decrypt": streams + controls,
    }


def main():
    for target, inputs in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for data in inputs:
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
        print(f"{target}: {len(inputs)} seed(s) in {folder.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

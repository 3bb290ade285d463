//! Always runs: without features `live-vault` and `aws-cli`, prints one line each naming the
//! test targets that need a live OpenBao server or the AWS CLI and were therefore not built
//! (`kms_testkit::skipped`).

fn main() {
    kms_testkit::skipped::report(env!("CARGO_MANIFEST_DIR"), "live-vault", cfg!(feature = "live-vault"));
    kms_testkit::skipped::report(env!("CARGO_MANIFEST_DIR"), "aws-cli", cfg!(feature = "aws-cli"));
}

//! Always runs: without feature `live-vault`, prints the one line naming the test targets that
//! need a live OpenBao server and were therefore not built (`kms_testkit::skipped`).

fn main() {
    kms_testkit::skipped::report(env!("CARGO_MANIFEST_DIR"), "live-vault", cfg!(feature = "live-vault"));
}

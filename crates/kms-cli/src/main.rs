//! The `kms` binary (being filled by the admin API issue).
fn main() {}

//! **kms**: a key-management library. (The facade is being filled by the foundation issue.)
#![forbid(unsafe_code)]

//! Process hardening for `kms serve`: the server holds every key version in memory, so a core
//! dump (a crash, `gcore`, a debugger of the same user) would write them to disk in the clear.
//! At start the process is made non-dumpable (Linux `PR_SET_DUMPABLE` 0, which also stops
//! other processes of the same user from attaching with ptrace or reading its memory through
//! /proc) and its soft `RLIMIT_CORE` is set to 0. `--allow-core-dumps` turns both off.

/// What [`harden`] did, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hardening {
    /// The process was made non-dumpable.
    pub(crate) non_dumpable: bool,
    /// The soft core-file limit is 0.
    pub(crate) no_core_files: bool,
}

/// Turns core dumps off for this process; failures are reported, not fatal (the start-up log
/// says what could not be done).
pub(crate) fn harden() -> Result<Hardening, String> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
    rustix::process::setrlimit(
        rustix::process::Resource::Core,
        rustix::process::Rlimit { current: Some(0), maximum: limit.maximum },
    )
    .map_err(|e| format!("cannot set RLIMIT_CORE to 0: {e}"))?;
    non_dumpable()?;
    Ok(Hardening { non_dumpable: cfg!(target_os = "linux"), no_core_files: true })
}

#[cfg(target_os = "linux")]
fn non_dumpable() -> Result<(), String> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| format!("cannot make the process non-dumpable: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn non_dumpable() -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harden_turns_core_dumps_off() {
        let done = harden().unwrap();
        assert!(done.no_core_files);
        assert_eq!(rustix::process::getrlimit(rustix::process::Resource::Core).current, Some(0));
        #[cfg(target_os = "linux")]
        {
            assert!(done.non_dumpable);
            let behavior = rustix::process::dumpable_behavior().unwrap();
            assert_eq!(behavior, rustix::process::DumpableBehavior::NotDumpable);
        }
    }
}

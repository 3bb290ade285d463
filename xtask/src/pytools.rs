//! Python packages for the test run, installed into the project (`.tools/python`), never into
//! the user's Python: `pip install --target` (which installs every dependency there too), then
//! every run puts the directory on `PYTHONPATH` and leaves the system's site-packages out. Used for the independent checker of the format vectors
//! (`docs/vectors/check.py`, which needs `cryptography` and `argon2-cffi`); other tasks add
//! their own packages (boto3, awscli, …) to the same directory through [`PythonTools::ensure`]
//! (pip puts their console scripts, such as `aws`, in `.tools/python/bin`; run them through
//! [`PythonTools::command`] so they find their packages).
//!
//! Only `std` and the `python3` on PATH (or the interpreter `KMS_PYTHON` names): the xtask stays
//! free of dependencies. A machine without Python 3 or pip gets an error that says what to
//! install, not a stack of pip output.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the packages are installed (git-ignored, like `.tools/openbao`).
const TOOLS_DIR: &str = ".tools/python";

/// A Python package: its name on PyPI (with an optional version requirement) and the module
/// that proves it is importable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Package {
    /// What `pip install` is given, e.g. `cryptography>=42`.
    pub(crate) requirement: &'static str,
    /// What `import` is given, e.g. `cryptography`.
    pub(crate) module: &'static str,
}

/// What the format-vector checker imports.
pub(crate) const VECTOR_CHECKER: &[Package] = &[
    Package { requirement: "cryptography>=42", module: "cryptography" },
    Package { requirement: "argon2-cffi>=23", module: "argon2" },
];

/// A Python interpreter with a project-local package directory.
#[derive(Debug)]
pub(crate) struct PythonTools {
    python: OsString,
    dir: PathBuf,
}

impl PythonTools {
    /// `KMS_PYTHON` or `python3`, with `packages` importable from `<workspace>/.tools/python`
    /// (installed there first if any is missing).
    pub(crate) fn ensure(workspace_root: &Path, packages: &[Package]) -> Result<Self, String> {
        let python = std::env::var_os("KMS_PYTHON").unwrap_or_else(|| "python3".into());
        Self::ensure_with(&python, &workspace_root.join(TOOLS_DIR), packages)
    }

    /// [`ensure`](Self::ensure) with an explicit interpreter and directory.
    pub(crate) fn ensure_with(python: &OsStr, dir: &Path, packages: &[Package]) -> Result<Self, String> {
        let tools = Self { python: python.to_owned(), dir: dir.to_owned() };
        tools.check_interpreter()?;
        let missing: Vec<Package> = packages.iter().copied().filter(|p| !tools.can_import(p.module)).collect();
        if missing.is_empty() {
            return Ok(tools);
        }
        tools.pip_install(&missing)?;
        if let Some(p) = missing.iter().find(|p| !tools.can_import(p.module)) {
            return Err(format!(
                "`{}` was installed into {} but `import {}` still fails",
                p.requirement,
                dir.display(),
                p.module
            ));
        }
        Ok(tools)
    }

    /// A command running the interpreter with the package directory on `PYTHONPATH` and
    /// without the interpreter's own site-packages (`-S`), so the packages and versions are
    /// the ones installed here, whatever else the machine has.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.python);
        command.arg("-S");
        let mut path = OsString::from(self.dir.as_os_str());
        if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(existing);
        }
        command.env("PYTHONPATH", path).env("PYTHONDONTWRITEBYTECODE", "1").stdin(Stdio::null());
        command
    }

    /// Writes `<dir>/shims/NAME`, a shell script that runs `python -S -m MODULE` with this
    /// package directory on `PYTHONPATH`, and returns the shims directory, for a child's
    /// `PATH`: a console script pip put in `bin/` finds its packages only that way.
    pub(crate) fn shim(&self, name: &str, module: &str) -> Result<PathBuf, String> {
        let shims = self.dir.join("shims");
        std::fs::create_dir_all(&shims).map_err(|e| format!("cannot create {}: {e}", shims.display()))?;
        let quote = |s: &OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
        let script = format!(
            "#!/bin/sh\nPYTHONPATH={}${{PYTHONPATH:+:$PYTHONPATH}} exec {} -S -m {module} \"$@\"\n",
            quote(self.dir.as_os_str()),
            quote(&self.python),
        );
        let path = shims.join(name);
        std::fs::write(&path, script).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("cannot make {} executable: {e}", path.display()))?;
        }
        Ok(shims)
    }

    /// Runs `python SCRIPT ARGS…` and fails unless it exits 0.
    pub(crate) fn run_script(&self, script: &Path, args: &[&OsStr]) -> Result<(), String> {
        eprintln!("$ python3 {}", script.display());
        let status = self
            .command()
            .arg(script)
            .args(args)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", self.python.to_string_lossy()))?;
        if status.success() { Ok(()) } else { Err(format!("`{}` failed ({status})", script.display())) }
    }

    fn check_interpreter(&self) -> Result<(), String> {
        let shown = self.python.to_string_lossy();
        let version = Command::new(&self.python)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .stdin(Stdio::null())
            .output();
        let version = match version {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            Ok(out) => return Err(format!("`{shown}` does not run: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => {
                return Err(format!(
                    "Python 3 is needed for the independent format-vector checker (docs/vectors/check.py) \
                     but `{shown}` cannot be run ({e}); install Python 3.8 or later with pip \
                     (e.g. `apt-get install python3 python3-pip`) or name an interpreter in KMS_PYTHON"
                ));
            }
        };
        let supported = version.split_once('.').and_then(|(major, minor)| {
            Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)).filter(|v| *v >= (3, 8))
        });
        if supported.is_none() {
            return Err(format!("`{shown}` is Python {version}; the tools need Python 3.8 or later"));
        }
        Ok(())
    }

    fn can_import(&self, module: &str) -> bool {
        self.command()
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn pip_install(&self, packages: &[Package]) -> Result<(), String> {
        let shown = self.python.to_string_lossy();
        let has_pip = Command::new(&self.python)
            .args(["-m", "pip", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !has_pip {
            return Err(format!(
                "`{shown} -m pip` is not available; install pip (e.g. `apt-get install python3-pip`) \
                 so the xtask can install {} into {}",
                requirements(packages),
                self.dir.display()
            ));
        }
        eprintln!("xtask: installing {} into {}", requirements(packages), self.dir.display());
        let status = Command::new(&self.python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input", "--upgrade"])
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .arg("--target")
            .arg(&self.dir)
            .args(packages.iter().map(|p| p.requirement))
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {shown} -m pip: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`pip install --target {} {}` failed ({status})", self.dir.display(), requirements(packages)))
        }
    }
}

fn requirements(packages: &[Package]) -> String {
    packages.iter().map(|p| p.requirement).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_interpreter_is_named_with_what_to_install() {
        let dir = std::env::temp_dir().join("kms-xtask-pytools-absent");
        let err = PythonTools::ensure_with(OsStr::new("/nonexistent/python3"), &dir, VECTOR_CHECKER).unwrap_err();
        assert!(err.contains("Python 3 is needed"), "{err}");
        assert!(err.contains("KMS_PYTHON"), "{err}");
        assert!(!dir.exists(), "nothing is installed without an interpreter");
    }

    #[test]
    fn the_package_directory_comes_first_on_the_python_path() {
        let tools = PythonTools { python: "python3".into(), dir: PathBuf::from("/x/.tools/python") };
        let command = tools.command();
        let path = command.get_envs().find(|(k, _)| *k == "PYTHONPATH").and_then(|(_, v)| v).unwrap();
        assert!(path.to_string_lossy().starts_with("/x/.tools/python"));
        assert_eq!(command.get_args().next(), Some(OsStr::new("-S")));
        assert_eq!(requirements(VECTOR_CHECKER), "cryptography>=42 argon2-cffi>=23");
    }
}

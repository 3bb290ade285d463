//! `NAME=VALUE` command-line values (`--tag`, `--context`), shared by the key commands, the
//! file commands and rewrap (its own module, so none of them depends on another).

use std::collections::BTreeMap;

use crate::client::CliError;

/// Parses `NAME=VALUE` arguments of `flag`; a value may contain `=`, a name may not be empty.
pub(crate) fn pairs(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    items
        .iter()
        .map(|item| {
            item.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| CliError::usage(format!("{flag} {item}: expected NAME=VALUE")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::exit;

    #[test]
    fn pairs_parse_and_reject_garbage() {
        let p = pairs("--tag", &["a=1".into(), "b=x=y".into(), "c=".into()]).unwrap();
        assert_eq!(p["b"], "x=y");
        assert_eq!(p["c"], "");
        let err = pairs("--tag", &["novalue".into()]).unwrap_err();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("--tag novalue"), "{}", err.message);
        assert_eq!(pairs("--tag", &["=v".into()]).unwrap_err().code, exit::USAGE);
    }
}

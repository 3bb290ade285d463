//! Shell completions and the manual page, both generated from the clap definitions, so they
//! always match the commands this binary takes.

use std::io::Write;

use crate::client::CliError;

/// `kms completions SHELL`: the completion script on stdout.
pub(crate) fn completions(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut command = crate::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "kms", &mut out);
    write_stdout(&out)
}

/// `kms man`: the roff manual page kms(1) on stdout, with a section per subcommand.
pub(crate) fn man_page() -> Result<(), CliError> {
    write_stdout(&render_man_page()?)
}

fn render_man_page() -> Result<Vec<u8>, CliError> {
    let command = crate::cli::command();
    let mut out = Vec::new();
    let fail = |e: std::io::Error| CliError::local(format!("rendering the manual page: {e}"));
    clap_mangen::Man::new(command.clone()).render(&mut out).map_err(fail)?;
    // The top page lists the subcommands; their options follow, one section each.
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let title = format!("kms {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone());
        writeln!(out, ".SH \"{}\"", title.to_uppercase()).map_err(fail)?;
        man.render_description_section(&mut out).map_err(fail)?;
        man.render_options_section(&mut out).map_err(fail)?;
    }
    Ok(out)
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(|e| CliError::local(format!("stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_cover_the_subcommands_and_their_options() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut command = crate::cli::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command, "kms", &mut out);
            let text = String::from_utf8(out).unwrap();
            for word in ["serve", "rewrap", "completions", "context", "listen"] {
                assert!(text.contains(word), "{shell:?} lacks {word}");
            }
        }
    }

    #[test]
    fn the_manual_page_is_roff_and_documents_every_command() {
        let text = String::from_utf8(render_man_page().unwrap()).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH kms 1"), "{}", &text[..200]);
        for section in ["KMS SERVE", "KMS REWRAP", "KMS CONFIG", "KMS DECRYPT"] {
            assert!(text.contains(section), "{section} missing");
        }
        assert!(text.contains("listen"));
    }
}

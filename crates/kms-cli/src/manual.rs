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
    clap_mangen::Man::new(command.clone()).render(&mut out).map_err(man_error)?;
    // The top page lists the subcommands; each one follows with a section of its own
    // (nested ones too: `kms key create`), its description and options as subsections.
    render_subcommands(&command, "kms", &mut out)?;
    Ok(out)
}

fn render_subcommands(parent: &clap::Command, path: &str, out: &mut Vec<u8>) -> Result<(), CliError> {
    let mut subs: Vec<&clap::Command> =
        parent.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help").collect();
    subs.sort_by_key(|s| s.get_display_order());
    for sub in subs {
        let title = format!("{path} {}", sub.get_name());
        writeln!(out, ".SH \"{}\"", title.to_uppercase()).map_err(man_error)?;
        let man = clap_mangen::Man::new(sub.clone());
        let mut section = Vec::new();
        man.render_description_section(&mut section).map_err(man_error)?;
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut section).map_err(man_error)?;
        }
        let section = String::from_utf8_lossy(&section).replace(".SH ", ".SS ");
        out.extend_from_slice(section.as_bytes());
        render_subcommands(sub, &title, out)?;
    }
    Ok(())
}

fn man_error(e: std::io::Error) -> CliError {
    CliError::local(format!("rendering the manual page: {e}"))
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
        for section in ["KMS SERVE", "KMS REWRAP", "KMS CONFIG CHECK", "KMS DECRYPT", "KMS KEY CREATE"] {
            assert!(text.contains(section), "{section} missing");
        }
        assert!(text.contains("listen"));
    }
}

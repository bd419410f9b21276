//! `genesisctl completions <shell>`.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::{CmdResult, Code};

pub fn run(target: clap_complete::Shell, shell: &crate::shell::Shell) -> CmdResult {
    let mut command = Cli::command();
    clap_complete::generate(target, &mut command, "genesisctl", &mut shell.stdout());
    Ok(Code::Ok)
}

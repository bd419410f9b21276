//! `genesisctl completions <shell>`.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::exit::{CmdResult, Code};

pub fn run(shell: clap_complete::Shell) -> CmdResult {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "genesisctl", &mut std::io::stdout());
    Ok(Code::Ok)
}

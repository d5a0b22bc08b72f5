//! `assistant`: the 1999 hotline assistant's command line (see [`assistant::cli`]).

fn main() -> std::process::ExitCode {
    assistant::cli::main()
}

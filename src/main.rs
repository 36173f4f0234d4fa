use clap::Parser;

fn main() {
    let cli = custodian::cli::Cli::parse();
    let status = match custodian::run(cli) {
        Ok(status) => status,
        Err(e) => {
            custodian::messages::error(&format!("{e:#}"));
            custodian::exit::ExitStatus::CouldNotRun
        }
    };
    std::process::exit(status.code());
}

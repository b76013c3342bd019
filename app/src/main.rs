//! `vessel`: the command line front end (and, later, the window and the GTK manager).

use clap::{Parser, Subcommand};

mod floppy;
mod img;
mod run;
mod screenshot;

#[derive(Parser)]
#[command(name = "vessel", version, about = "Vessel: a desktop virtualization manager with its own PC emulator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what this build of Vessel contains.
    Version,
    /// Boot a PC headless (QEMU-style flags: -m, -bios, -serial, -kernel, -nographic, ...).
    Run(run::RunArgs),
    /// Disk images (qemu-img verbs): create, info, check, convert, snapshot, commit, rebase, resize, map, bench.
    Img(img::ImgArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse_from(run::qemu_style_args(std::env::args_os()));
    match cli.command {
        Command::Version => println!("vessel {}", env!("CARGO_PKG_VERSION")),
        Command::Img(args) => img::run(args)?,
        Command::Run(args) => {
            let code = run::run(args)?;
            std::process::exit(code);
        }
    }
    Ok(())
}

//! `vessel`: the command line front end and the GTK manager (`vessel manager`, docs/manager.md).

use clap::{Parser, Subcommand};

mod drives;
mod floppy;
mod img;
#[cfg(feature = "manager")]
mod manager;
mod monitor;
mod run;
mod screenshot;
mod window;

#[derive(Parser)]
#[command(name = "vessel", version, about = "Vessel: a desktop virtualization manager with its own PC emulator")]
struct Cli {
    /// Without a subcommand: the manager when a display is available, else this help.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print what this build of Vessel contains.
    Version,
    /// Boot a PC in a window, or headless with -nographic / -display none (QEMU-style flags: -m, -bios, -serial, -kernel, ...).
    Run(run::RunArgs),
    /// Disk images (qemu-img verbs): create, info, check, convert, snapshot, commit, rebase, resize, map, bench.
    Img(img::ImgArgs),
    /// The GTK desktop manager: the library of VMs, the creation wizard, settings.
    #[cfg(feature = "manager")]
    Manager(manager::ManagerArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse_from(run::qemu_style_args(std::env::args_os()));
    let command = match cli.command {
        Some(c) => c,
        #[cfg(feature = "manager")]
        None if manager::display_available() => Command::Manager(manager::ManagerArgs::default()),
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            std::process::exit(2);
        }
    };
    match command {
        #[cfg(feature = "manager")]
        Command::Manager(args) => manager::run(args)?,
        Command::Version => println!("vessel {}", env!("CARGO_PKG_VERSION")),
        Command::Img(args) => img::run(args)?,
        Command::Run(args) => {
            let code = run::run(args)?;
            std::process::exit(code);
        }
    }
    Ok(())
}

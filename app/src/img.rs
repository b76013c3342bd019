//! `vessel img`: disk image tool with `qemu-img`'s verbs and flags. Only argument parsing and
//! printing live here; the work is in `vessel_core::block::ops`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use vessel_core::block::ops;

#[derive(Args)]
pub struct ImgArgs {
    #[command(subcommand)]
    cmd: ImgCommand,
}

#[derive(Subcommand)]
enum ImgCommand {
    /// Create an image: `create -f qcow2 [-b BACKING -F FMT] [-o opts] FILE [SIZE]`.
    Create {
        #[arg(short = 'f', default_value = "raw")]
        format: String,
        #[arg(short = 'b')]
        backing: Option<String>,
        #[arg(short = 'F')]
        backing_format: Option<String>,
        /// Format options: cluster_size, compat (0.10|1.1), refcount_bits, lazy_refcounts=off.
        #[arg(short = 'o')]
        options: Option<String>,
        #[arg(short = 'q')]
        quiet: bool,
        file: PathBuf,
        /// Size with optional k/M/G/T suffix; defaults to the backing file's size.
        size: Option<String>,
    },
    /// Show format, sizes, backing file and snapshots.
    Info {
        #[arg(short = 'f')]
        format: Option<String>,
        #[arg(long, default_value = "human", value_parser = ["human", "json"])]
        output: String,
        file: PathBuf,
    },
    /// Check a qcow2 image's metadata; `-r all` repairs leaks and refcount errors.
    Check {
        #[arg(short = 'f')]
        format: Option<String>,
        #[arg(short = 'r', value_parser = ["leaks", "all"])]
        repair: Option<String>,
        #[arg(long, default_value = "human", value_parser = ["human", "json"])]
        output: String,
        file: PathBuf,
    },
    /// Copy an image into a new one (any readable format to raw or qcow2), flattening backing
    /// chains; `-c` compresses qcow2 clusters.
    Convert {
        #[arg(short = 'c')]
        compress: bool,
        #[arg(short = 'f')]
        format: Option<String>,
        #[arg(short = 'O', default_value = "raw")]
        out_format: String,
        #[arg(short = 'o')]
        options: Option<String>,
        /// No progress bar.
        #[arg(short = 'q')]
        quiet: bool,
        /// Progress bar even when not on a terminal.
        #[arg(short = 'p')]
        progress: bool,
        input: PathBuf,
        output: PathBuf,
    },
    /// Internal snapshots of a qcow2 image.
    #[command(group(ArgGroup::new("op").required(true).args(["create", "list", "apply", "delete"])))]
    Snapshot {
        #[arg(short = 'c', value_name = "NAME")]
        create: Option<String>,
        #[arg(short = 'l')]
        list: bool,
        #[arg(short = 'a', value_name = "NAME")]
        apply: Option<String>,
        #[arg(short = 'd', value_name = "NAME")]
        delete: Option<String>,
        #[arg(short = 'f')]
        format: Option<String>,
        file: PathBuf,
    },
    /// Write an overlay's changes into its backing file (and empty the overlay unless -d).
    Commit {
        #[arg(short = 'f')]
        format: Option<String>,
        #[arg(short = 'd')]
        keep: bool,
        file: PathBuf,
    },
    /// Change an overlay's backing file (`-b ""` removes it); `-u` only rewrites the name.
    Rebase {
        #[arg(short = 'f')]
        format: Option<String>,
        #[arg(short = 'b')]
        backing: String,
        #[arg(short = 'F')]
        backing_format: Option<String>,
        #[arg(short = 'u')]
        unsafe_: bool,
        file: PathBuf,
    },
    /// Grow (or with --shrink, shrink) an image: SIZE, +SIZE or -SIZE.
    Resize {
        #[arg(short = 'f')]
        format: Option<String>,
        #[arg(long)]
        shrink: bool,
        file: PathBuf,
        #[arg(allow_hyphen_values = true)]
        size: String,
    },
    /// Show where each part of the disk is stored, through the backing chain.
    Map {
        #[arg(short = 'f')]
        format: Option<String>,
        #[arg(long, default_value = "human", value_parser = ["human", "json"])]
        output: String,
        file: PathBuf,
    },
    /// Throughput of sequential and 4 KiB random I/O through Vessel's block layer.
    Bench {
        #[arg(short = 'f')]
        format: Option<String>,
        /// Bytes per pattern (default 64M).
        #[arg(long, default_value = "64M")]
        bytes: String,
        #[arg(long, default_value = "human", value_parser = ["human", "json"])]
        output: String,
        file: PathBuf,
    },
}

pub fn run(args: ImgArgs) -> Result<()> {
    match args.cmd {
        ImgCommand::Create { format, backing, backing_format, options, quiet, file, size } => {
            let size = match size {
                Some(s) => Some(ops::parse_size(&s).with_context(|| format!("{}: invalid size '{s}'", file.display()))?),
                None => None,
            };
            let options = match options {
                Some(o) => ops::parse_options(&o).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
                None => Vec::new(),
            };
            let spec = ops::CreateSpec { format: format.clone(), size, backing_file: backing, backing_format, options };
            ops::create(&file, &spec)?;
            if !quiet {
                println!("Formatting '{}', fmt={format}", file.display());
            }
        }
        ImgCommand::Info { format, output, file } => {
            let i = ops::info(&file, format.as_deref())?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&i)?);
            } else {
                print!("{}", ops::info_text(&i));
            }
        }
        ImgCommand::Check { format, repair, output, file } => {
            let r = ops::check(&file, format.as_deref(), repair.is_some())?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", ops::check_text(&r));
            }
            // Exit codes as qemu-img: 2 corruption, 3 leaks only.
            if r.corruptions > 0 {
                std::process::exit(2);
            }
            if r.leaks > 0 {
                std::process::exit(3);
            }
        }
        ImgCommand::Convert { compress, format, out_format, options, quiet, progress, input, output } => {
            let options = match options {
                Some(o) => ops::parse_options(&o).map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?,
                None => Vec::new(),
            };
            let show = !quiet && (progress || std::io::IsTerminal::is_terminal(&std::io::stderr()));
            let bar = indicatif::ProgressBar::hidden();
            if show {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec}")
                        .unwrap(),
                );
            }
            let mut cb = |done: u64, total: u64| {
                bar.set_length(total);
                bar.set_position(done);
            };
            ops::convert(&input, format.as_deref(), &output, &out_format, compress, &options, &mut cb)?;
            bar.finish();
        }
        ImgCommand::Snapshot { create, list, apply, delete, format, file } => {
            let q = ops::open_qcow2(&file, format.as_deref(), list, "snapshot")?;
            if list {
                let s = q.snapshots();
                if !s.is_empty() {
                    println!("Snapshot list:");
                    print!("{}", ops::snapshot_table(&s));
                }
            } else if let Some(n) = create {
                q.snapshot_create(&n)?;
            } else if let Some(n) = apply {
                q.snapshot_apply(&n)?;
            } else if let Some(n) = delete {
                q.snapshot_delete(&n)?;
            }
        }
        ImgCommand::Commit { format, keep, file } => {
            ops::commit(&file, format.as_deref(), keep)?;
            println!("Image committed.");
        }
        ImgCommand::Rebase { format, backing, backing_format, unsafe_, file } => {
            let b = if backing.is_empty() { None } else { Some(backing.as_str()) };
            ops::rebase(&file, format.as_deref(), b, backing_format.as_deref(), unsafe_)?;
        }
        ImgCommand::Resize { format, shrink, file, size } => {
            ops::resize(&file, format.as_deref(), &size, shrink)?;
            println!("Image resized.");
        }
        ImgCommand::Map { format, output, file } => {
            let m = ops::map(&file, format.as_deref())?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                print!("{}", ops::map_text(&m));
            }
        }
        ImgCommand::Bench { format, bytes, output, file } => {
            let bytes = ops::parse_size(&bytes).with_context(|| format!("invalid --bytes '{bytes}'"))?;
            let dev = vessel_core::block::open_image(&file, format.as_deref(), false)?;
            if dev.size() < bytes {
                bail!("{}: image ({} bytes) is smaller than --bytes {bytes}", file.display(), dev.size());
            }
            let r = ops::bench(&*dev, bytes)?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                for (name, mbs) in [
                    ("sequential write", r.seq_write_mbs),
                    ("sequential read", r.seq_read_mbs),
                    ("4k random write", r.rand_write_mbs),
                    ("4k random read", r.rand_read_mbs),
                ] {
                    println!("{name:<18} {mbs:>10.1} MiB/s");
                }
            }
        }
    }
    Ok(())
}

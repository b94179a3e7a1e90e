//! The `flashstock` command: `serve` (the default), `migrate`, `token`.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Parser;
use flashstock::config::{Cli, Command};

/// glibc's allocator spent ~15% of the server's CPU under load (many small,
/// short-lived allocations across threads); mimalloc's thread-local heaps do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    flashstock::telemetry::init(cli.settings.log_json);
    flashstock::memory::use_small_pages();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(flashstock::app::serve(cli.settings)),
        Command::Migrate => runtime.block_on(async {
            let (_, shards) = flashstock::app::open_store(&cli.settings).await?;
            println!("migrations applied; {shards} shards");
            Ok(())
        }),
        Command::Loadtest(args) => runtime.block_on(async {
            // A file beside the report is created before the load, so that a path
            // that cannot be written fails at once rather than after the run; it
            // replaces the report only once the run has one, so a failed run
            // leaves an earlier report as it was.
            let json = match &args.json {
                Some(path) => Some((path, report_file(path)?)),
                None => None,
            };
            let report = flashstock::loadtest::run(&args, cli.settings.jwt_secret()).await?;
            print!("{}", report.table());
            if let Some((path, mut file)) = json {
                file.write_all(&serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                file.persist(path)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if !report.verdict.passed {
                anyhow::bail!("the verdict is FAIL");
            }
            Ok(())
        }),
        Command::Token(args) => {
            let auth = flashstock::http::Auth::new(cli.settings.jwt_secret());
            println!("{}", auth.token(&args.sub, args.admin, args.ttl));
            Ok(())
        }
    }
}

/// A new file in the folder of `path`, to be renamed over it when written.
fn report_file(path: &std::path::Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => std::path::Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".flashstock-report-")
        .tempfile_in(folder)
        .with_context(|| format!("cannot create {}", path.display()))
}

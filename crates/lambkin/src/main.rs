//! The `lambkin` binary.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use lambkin::cli::{self, Cli, Command, EXIT_CONFIG};
use lambkin::host::{self, Listeners, RunOptions};

/// Prints `lambkin: MESSAGE` on stderr, outside the host's log (before it is set up, or as the
/// host exits), marked as an error for the journal when stderr is one.
macro_rules! fail {
    ($($arg:tt)*) => {
        eprintln!("{}lambkin: {}", lambkin::journal::error_prefix(), format_args!($($arg)*))
    };
}

fn main() -> ExitCode {
    if let Some(code) = lambkin::lambda::sandbox::run_if_init() {
        return ExitCode::from(code);
    }
    lambkin_sys::return_freed_memory_promptly();
    // Before the host's thread is ever pinned (see `lambda::placement`).
    lambkin_sys::remember_start_cpus();
    // Before any thread: a host under many connections must not run out of descriptors first.
    let open_files = lambkin_sys::raise_open_files_limit();
    let cli = Cli::parse();
    // One thread runs the whole host: an invocation crosses several tasks (API connection,
    // function, instance, Runtime API connection), and keeping them on one thread saves the
    // cross-thread wake-ups that would otherwise dominate its cost. Function processes use the
    // other cores; blocking work (the state database) has its own thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            fail!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = &open_files {
        fail!("cannot raise the open-files limit: {e}");
    }
    let code = runtime.block_on(dispatch(cli.command));
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn dispatch(command: Command) -> i32 {
    let result = match command {
        Command::Run {
            root,
            config,
            listen,
            with_example,
        } => {
            never_writable_by_others();
            let layout = root.layout();
            let config = match cli::load_config(&layout, config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    fail!("invalid configuration: {e}");
                    return EXIT_CONFIG;
                }
            };
            if let Err(e) = config.check_listen(listen.unwrap_or(config.listen)) {
                fail!("invalid configuration: {e}");
                return EXIT_CONFIG;
            }
            if let Err(e) = lambkin::layout::create_private_dir(&layout.logs_dir()) {
                fail!("cannot create {}: {e}", layout.logs_dir().display());
                return 1;
            }
            init_tracing(&layout.host_log());
            // Held until the process ends.
            let _root = match lambkin::layout::RootLock::acquire(&layout) {
                Ok(lock) => lock,
                Err(e) => {
                    fail!("{e}");
                    return 1;
                }
            };
            match Listeners::bind(&layout, &config, listen).await {
                Ok(listeners) => {
                    let opts = RunOptions {
                        layout,
                        config,
                        with_example,
                    };
                    host::run(opts, listeners, shutdown_signal())
                        .await
                        .map(|()| 0)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Invoke {
            root,
            name,
            payload,
            payload_file,
            asynchronous,
            log_tail,
        } => {
            cli::invoke(
                &root.layout(),
                &name,
                payload,
                payload_file,
                asynchronous,
                log_tail,
            )
            .await
        }
        Command::Logs {
            root,
            name,
            follow,
            lines,
        } => cli::logs(&root.layout(), &name, follow, lines).await,
        Command::Deploy {
            root,
            recipe_dir,
            artifact_dir,
            merge,
            remove,
            update_config,
            failure_policy,
            run_with,
            system_limits,
            notify_components,
        } => {
            cli::deploy(
                &root.layout(),
                recipe_dir,
                artifact_dir,
                merge,
                remove,
                update_config,
                &failure_policy,
                run_with,
                system_limits,
                notify_components,
            )
            .await
        }
        Command::List { root, json } => cli::list(&root.layout(), json).await,
        Command::Top {
            root,
            once,
            interval,
        } => lambkin::top::run(&root.layout(), once, Duration::from_secs_f64(interval)).await,
        Command::Console { root } => cli::console(&root.layout()).await,
        Command::Restart { root, name } => cli::control(&root.layout(), &name, "restart").await,
        Command::Stop { root, name } => cli::control(&root.layout(), &name, "stop").await,
        Command::Pub {
            root,
            topic,
            message,
        } => cli::publish(&root.layout(), &topic, &message).await,
        Command::Sub { root, filter } => cli::subscribe(&root.layout(), &filter).await,
        Command::Credentials { root } => cli::credentials(&root.layout()),
        Command::Backup { root, file } => cli::backup(&root.layout(), &file).await,
        Command::Restore { root, file, force } => cli::restore(&root.layout(), &file, force).await,
        Command::Install {
            root,
            unit_dir,
            binary,
            thing_name,
            region,
            mqtt_endpoint,
            cert,
            key,
            ca,
            component_default_user,
            force,
            no_enable,
            no_unit,
            print_unit,
        } => {
            if print_unit {
                return install_status(
                    lambkin::install::print_unit(&root.layout(), binary.as_deref())
                        .map(|text| print!("{text}")),
                );
            }
            let opts = lambkin::install::InstallOptions {
                layout: root.layout(),
                unit_dir,
                binary,
                thing_name,
                region,
                mqtt_endpoint,
                cert,
                key,
                ca,
                component_default_user,
                force,
                no_enable,
                no_unit,
            };
            return install_status(lambkin::install::install(&opts));
        }
        Command::Uninstall {
            root,
            purge,
            no_enable,
        } => {
            let opts = lambkin::install::UninstallOptions {
                layout: root.layout(),
                purge,
                no_enable,
            };
            return install_status(lambkin::install::uninstall(&opts));
        }
        Command::CheckConfig { root, config } => {
            match cli::load_config(&root.layout(), config.as_deref()) {
                Ok(_) => {
                    println!("configuration is valid");
                    Ok(0)
                }
                Err(e) => {
                    fail!("invalid configuration: {e}");
                    return EXIT_CONFIG;
                }
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            fail!("{e:#}");
            host::exit_code(&e)
        }
    }
}

/// Keeps the host's umask from letting group or others write what the host creates (started
/// with umask 0, `ROOT/packages` would be writable by every component's user, who could then
/// replace another's artifacts). A stricter umask is kept. Files that must be the host's alone
/// get their mode explicitly (`layout`); processes the host starts inherit this umask.
fn never_writable_by_others() {
    use nix::sys::stat::{umask, Mode};
    let current = umask(Mode::S_IWGRP | Mode::S_IWOTH);
    umask(current | Mode::S_IWGRP | Mode::S_IWOTH);
}

/// Resolves on Ctrl-C or SIGTERM.
/// The exit status of `install`, `uninstall` or `install --print-unit`, the error printed.
fn install_status(result: Result<(), lambkin::install::InstallError>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            fail!("{e}");
            e.exit_code()
        }
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            fail!("cannot watch SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Host logs go to stderr and to `ROOT/logs/lambkin.log` (the host's user's alone). Stderr
/// that is the systemd journal gets each line's level as a `<N>` prefix (`lambkin::journal`).
fn init_tracing(log_file: &std::path::Path) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::fmt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // `LAMBKIN_LOG`: a level (`debug`) or `target=level` directives (`lambkin=debug,hyper=warn`).
    let filter = std::env::var("LAMBKIN_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    // Rotated by size like every other log (and owner-only), so a flood of warnings cannot
    // fill the disk.
    let file = lambkin::logfile::LogFile::open(log_file)
        .ok()
        .map(|f| lambkin::logfile::HostLog(std::sync::Arc::new(f)));
    let journal = lambkin::journal::stderr_is_journal();
    tracing_subscriber::registry()
        .with(filter)
        .with(journal.then(|| {
            fmt::layer()
                .without_time()
                .with_ansi(false)
                .with_writer(lambkin::journal::JournalStderr)
        }))
        .with((!journal).then(|| fmt::layer().with_writer(std::io::stderr)))
        .with(file.map(|file| fmt::layer().with_ansi(false).with_writer(file)))
        .init();
}

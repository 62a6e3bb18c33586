//! moto, the AWS emulator the AWS executor's tests run against: installed once into a cached
//! virtual environment, started on a free loopback port, seeded with fixtures.
//!
//! Layout under `~/.cache/agentsafe/moto/` (`$AGENTSAFE_CACHE/moto/` when set): `venv/`
//! (kept across runs) and `run/` (removed by `moto-down`): `moto.log`, `moto.pid`, `env`
//! (the variables the tests read) and `fixtures.json` (the seeded ids and ARNs).

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The pinned moto release (and boto3 comes with it).
const MOTO_VERSION: &str = "5.2.5";
/// The region the fixtures live in.
const REGION: &str = "us-east-1";

/// `~/.cache/agentsafe/moto` (under `$AGENTSAFE_CACHE` when set, like the API server's).
fn root() -> anyhow::Result<PathBuf> {
    Ok(crate::k8s::cache_root().join("moto"))
}

fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// The folder of the seed and helper scripts in the workspace.
fn scripts() -> PathBuf {
    crate::workspace_root().join("xtask").join("moto")
}

/// Whether the venv exists with the pinned moto importable.
fn venv_ready(venv: &Path) -> bool {
    venv.join("bin").join("moto_server").exists()
        && Command::new(python(venv))
            .args([
                "-c",
                &format!(
                    "import boto3, moto, sys; sys.exit(0 if moto.__version__ == '{MOTO_VERSION}' else 1)"
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn ensure_venv(venv: &Path) -> anyhow::Result<()> {
    if venv_ready(venv) {
        eprintln!("==> moto {MOTO_VERSION}: reusing {}", venv.display());
        return Ok(());
    }
    if venv.exists() {
        fs::remove_dir_all(venv)
            .with_context(|| format!("cannot remove the stale venv {}", venv.display()))?;
    }
    let mut c = Command::new("python3");
    c.args(["-m", "venv"]).arg(venv);
    crate::run("python3 -m venv", c)?;
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args([
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-q",
        &format!("moto[server]=={MOTO_VERSION}"),
    ]);
    crate::run(&format!("pip install moto[server]=={MOTO_VERSION}"), pip)?;
    if !venv_ready(venv) {
        bail!(
            "moto {MOTO_VERSION} is still not importable from {} after pip install",
            venv.display()
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

/// The status code of `GET path` on the loopback port, if the server answers.
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

/// Whether process `pid` exists and is not a zombie (its command line can still be empty
/// while it starts).
fn process_running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Whether `pid` is a live moto server of ours (not a reused pid).
fn pid_alive(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("moto/server.py"))
}

/// The (pid, port) of a running server recorded in `run`, if it still answers.
fn running(run: &Path) -> Option<(u32, u16)> {
    let pid: u32 = fs::read_to_string(run.join("moto.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let env = fs::read_to_string(run.join("env")).ok()?;
    let url = env
        .lines()
        .find_map(|l| l.strip_prefix("AWS_ENDPOINT_URL="))?;
    let port: u16 = url.rsplit(':').next()?.trim_end_matches('/').parse().ok()?;
    (pid_alive(pid) && http_get_status(port, "/moto-api/").is_some()).then_some((pid, port))
}

/// Installs (once), starts and seeds moto; returns the path of the env file. A second call
/// with a live server reuses it.
pub fn up() -> anyhow::Result<PathBuf> {
    let started = Instant::now();
    let root = root()?;
    let venv = root.join("venv");
    let run = root.join("run");
    let env_path = run.join("env");
    if let Some((pid, port)) = running(&run)
        && run.join("fixtures.json").exists()
    {
        eprintln!(
            "moto already running (pid {pid}, port {port}); env: {}",
            env_path.display()
        );
        return Ok(env_path);
    }
    if run.exists() {
        stop(&run)?;
    }
    fs::create_dir_all(&run).with_context(|| format!("cannot create {}", run.display()))?;
    ensure_venv(&venv)?;

    let port = free_port()?;
    let log = fs::File::create(run.join("moto.log"))
        .with_context(|| format!("cannot create {}", run.join("moto.log").display()))?;
    // `moto_server` through a wrapper that gives ECS tasks today's id format (server.py).
    let child = Command::new(python(&venv))
        .arg(scripts().join("server.py"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C of the terminal that ran xtask does not stop it.
        .process_group(0)
        .spawn()
        .context("cannot start moto's server")?;
    let pid = child.id();
    fs::write(run.join("moto.pid"), format!("{pid}\n"))?;
    // Until the server is up and seeded, a failure stops it again: nothing is left running.
    let endpoint = format!("http://127.0.0.1:{port}");
    let started_up = (|| -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get_status(port, "/moto-api/").is_none() {
            if !process_running(pid) {
                bail!(
                    "moto's server exited during start-up; see {}",
                    run.join("moto.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "moto_server did not answer on port {port} within 60 s; see {}",
                    run.join("moto.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let py = python(&venv);
        let env = format!(
            "AWS_ENDPOINT_URL={endpoint}\nAWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n\
             AWS_DEFAULT_REGION={REGION}\nAWS_REGION={REGION}\nAGENTSAFE_MOTO_PYTHON={}\n\
             AGENTSAFE_MOTO_SCRIPTS={}\n",
            py.display(),
            scripts().display()
        );
        let mut seed = Command::new(&py);
        seed.arg(scripts().join("aws.py"))
            .arg("seed")
            .arg(run.join("fixtures.json"))
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", REGION)
            .env_remove("AWS_PROFILE");
        crate::run("seed the moto fixtures", seed)?;
        // The answer must come from our server, not from whatever took the port first.
        if !process_running(pid) {
            bail!(
                "moto's server (pid {pid}) exited; see {}",
                run.join("moto.log").display()
            );
        }
        Ok(env)
    })();
    let env = match started_up {
        Ok(env) => env,
        Err(e) => {
            if let Err(stop_err) = stop(&run) {
                eprintln!("xtask: stopping moto after a failed start: {stop_err:#}");
            }
            return Err(e);
        }
    };
    // Written last: its presence means the server is up and seeded.
    fs::write(&env_path, env)?;
    eprintln!(
        "moto {MOTO_VERSION} up on {endpoint} (pid {pid}) in {:.1}s\n  env: {}\n  fixtures: {}\n  \
         use: set -a; . {}; set +a",
        started.elapsed().as_secs_f64(),
        env_path.display(),
        run.join("fixtures.json").display(),
        env_path.display()
    );
    Ok(env_path)
}

/// Stops the server recorded in `run` (if any) and removes `run`.
fn stop(run: &Path) -> anyhow::Result<()> {
    if let Some(pid) = fs::read_to_string(run.join("moto.pid"))
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        && pid_alive(pid)
    {
        let status = Command::new("kill")
            .arg(pid.to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill {pid} failed ({status})");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) {
            if Instant::now() > deadline {
                bail!("moto_server (pid {pid}) is still running 10 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("moto_server (pid {pid}) stopped");
    }
    if run.exists() {
        fs::remove_dir_all(run).with_context(|| format!("cannot remove {}", run.display()))?;
    }
    Ok(())
}

/// Stops moto and removes its run folder; the venv stays for the next `moto-up`.
pub fn down() -> anyhow::Result<()> {
    stop(&root()?.join("run"))
}

//! A real Kubernetes API server on loopback for the Kubernetes executor's tests:
//! `cargo xtask k8s-up` / `k8s-down`.
//!
//! These machines have no container engine, so no Kind. What they have is Debian's
//! `kubernetes` source package (v1.20, vendored dependencies) and Debian's `etcd-server`.
//! [`ensure_binaries`] downloads the source once, checks it against the pinned SHA-256,
//! builds `kube-apiserver` and `kube-controller-manager` with Debian's Go and caches them
//! under `~/.cache/agentsafe/k8s/bin` (override the cache root with `AGENTSAFE_CACHE`);
//! a warm run skips all of it. [`up`] then starts etcd, the API server (token auth, RBAC,
//! a throwaway CA) and the controller manager on free loopback ports and writes a
//! kubeconfig with two contexts: `agentsafe` (cluster admin, current) and
//! `agentsafe-limited` (authenticated, no RBAC rights). [`down`] stops them.
//!
//! There is no scheduler and no kubelet: pods stay Pending, so logs, exec and port-forward
//! cannot succeed here (the tests check their requests and error paths instead).

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The Debian source package the binaries are built from.
const DEB_VERSION: &str = "1.20.5+really1.20.2";
const DEB_REVISION: &str = "1.1+deb12u1";
const POOL: &str = "http://deb.debian.org/debian/pool/main/k/kubernetes";
/// SHA-256 of the upstream tarball, from the package's signed `.dsc`. Debian's own patches
/// (0001, 0002, CVE-2021-25743) change only kubectl's printing, so they are not applied.
const ORIG_SHA256: &str = "b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc";
/// The tree the orig tarball unpacks to.
const SRC_DIR: &str = "kubernetes-1.20.2";
/// What the build produces.
const BINARIES: [&str; 2] = ["kube-apiserver", "kube-controller-manager"];
/// The controllers worth running without nodes: Deployments get ReplicaSets and Pods,
/// namespaces get finalized, owned objects get collected.
const CONTROLLERS: &str = "deployment,replicaset,namespace,garbagecollector";

/// `~/.cache/agentsafe` (or `$AGENTSAFE_CACHE`).
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("AGENTSAFE_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("agentsafe")
}

fn k8s_dir() -> PathBuf {
    cache_root().join("k8s")
}

fn bin_dir() -> PathBuf {
    k8s_dir().join("bin")
}

/// The folder of the running servers: pki, etcd data, logs, pid files, the kubeconfig.
pub fn run_dir() -> PathBuf {
    k8s_dir().join("run")
}

/// The kubeconfig `up` writes.
pub fn kubeconfig_path() -> PathBuf {
    run_dir().join("kubeconfig")
}

/// Kubernetes 1.20 vendors reflect2 1.0.1, which corrupts memory under Go 1.18 and later
/// (every JSON write makes the API server panic). Debian's Go is 1.19, and Debian packages
/// reflect2 1.0.2, which fixes it: its source replaces the vendored copy before the build.
const REFLECT2_VENDOR: &str = "vendor/github.com/modern-go/reflect2";
const REFLECT2_DEBIAN: &str = "/usr/share/gocode/src/github.com/modern-go/reflect2";

fn stamp() -> String {
    format!(
        "{DEB_VERSION}-{DEB_REVISION} reflect2-1.0.2 {}",
        BINARIES.join(" ")
    )
}

/// Whether the cached binaries are there and were built from the pinned source.
pub fn binaries_cached() -> bool {
    let bin = bin_dir();
    fs::read_to_string(bin.join("STAMP")).is_ok_and(|s| s.trim() == stamp())
        && BINARIES.iter().all(|b| bin.join(b).is_file())
}

/// Downloads, verifies and builds the binaries unless they are cached. Long (about
/// 5 minutes on 2 cores) the first time, instant afterwards. The Debian packages it needs
/// (golang-go, rsync, jq, etcd-server, curl) are installed by `ensure_packages` first.
///
/// # Errors
/// When a download, the checksum or the build fails; the build log is named.
pub fn ensure_binaries() -> anyhow::Result<()> {
    if binaries_cached() {
        return Ok(());
    }
    let started = Instant::now();
    let src = k8s_dir().join("src");
    fs::create_dir_all(&src).with_context(|| format!("cannot create {}", src.display()))?;
    let orig = format!("kubernetes_{DEB_VERSION}.orig.tar.gz");
    download(&src, &orig, ORIG_SHA256)?;
    let tree = src.join(SRC_DIR);
    // Always from a clean tree: a half-finished earlier build leaves empty generator
    // binaries that make would take as up to date.
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("cannot remove {}", tree.display()))?;
    }
    let mut untar = Command::new("tar");
    untar.arg("xzf").arg(src.join(&orig)).arg("-C").arg(&src);
    quiet("unpack the Kubernetes source", untar)?;
    let vendored = tree.join(REFLECT2_VENDOR);
    fs::remove_dir_all(&vendored)
        .with_context(|| format!("cannot remove {}", vendored.display()))?;
    let mut cp = Command::new("cp");
    cp.arg("-r").arg(REFLECT2_DEBIAN).arg(&vendored);
    quiet("use Debian's reflect2 1.0.2 (Go 1.18+ safe)", cp)?;
    let log_path = k8s_dir().join("build.log");
    let log = fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let what: Vec<String> = BINARIES.iter().map(|b| format!("cmd/{b}")).collect();
    eprintln!(
        "==> building {} from Debian's kubernetes {DEB_VERSION} (log: {})",
        BINARIES.join(" and "),
        log_path.display()
    );
    let status = Command::new("make")
        .arg(format!("WHAT={}", what.join(" ")))
        .current_dir(&tree)
        .env("GOCACHE", k8s_dir().join("gocache"))
        .env("GOPATH", k8s_dir().join("gopath"))
        .env("CGO_ENABLED", "0")
        .env("GOFLAGS", "")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("cannot start make (is it installed?)")?;
    if !status.success() {
        bail!(
            "building kube-apiserver failed ({status}); see {}:\n{}",
            log_path.display(),
            tail(&log_path, 20)
        );
    }
    let bin = bin_dir();
    fs::create_dir_all(&bin)?;
    for b in BINARIES {
        // Copy, then rename over the old binary: a running server keeps its (unlinked) file.
        let built = tree.join("_output/bin").join(b);
        let fresh = bin.join(format!(".{b}.new"));
        fs::copy(&built, &fresh)
            .with_context(|| format!("the build did not produce {}", built.display()))?;
        fs::rename(&fresh, bin.join(b))?;
    }
    fs::write(bin.join("STAMP"), stamp())?;
    // The tree and Go's cache are only needed to build again: 2 GB we give back.
    let _ = fs::remove_dir_all(&tree);
    let _ = fs::remove_dir_all(k8s_dir().join("gocache"));
    let _ = fs::remove_dir_all(k8s_dir().join("gopath"));
    eprintln!(
        "<== kube-apiserver and kube-controller-manager built in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn download(dir: &Path, file: &str, sha256: &str) -> anyhow::Result<()> {
    let path = dir.join(file);
    if path.is_file() && sha256_of(&path)? == sha256 {
        return Ok(());
    }
    let mut curl = Command::new("curl");
    curl.args(["-fsSL", "--retry", "3", "-o"])
        .arg(&path)
        .arg(format!("{POOL}/{file}"));
    quiet(&format!("download {file}"), curl)?;
    let got = sha256_of(&path)?;
    if got != sha256 {
        let _ = fs::remove_file(&path);
        bail!("{file}: SHA-256 {got} is not the pinned {sha256}");
    }
    Ok(())
}

fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// Runs `cmd`, showing its output only when it fails.
fn quiet(what: &str, mut cmd: Command) -> anyhow::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start: {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all.get(all.len().saturating_sub(lines)..)
        .unwrap_or_default()
        .join("\n")
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn random_hex() -> anyhow::Result<String> {
    quiet("openssl rand", {
        let mut c = Command::new("openssl");
        c.args(["rand", "-hex", "24"]);
        c
    })
    .map(|s| s.trim().to_owned())
}

/// Starts a server in its own process group, detached from this one, logging to `log`;
/// records its pid in `<name>.pid`.
fn spawn(dir: &Path, name: &str, mut cmd: Command) -> anyhow::Result<u32> {
    let log = fs::File::create(dir.join(format!("{name}.log")))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    fs::write(dir.join(format!("{name}.pid")), child.id().to_string())?;
    Ok(child.id())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

fn pid_of(dir: &Path, name: &str) -> Option<u32> {
    fs::read_to_string(dir.join(format!("{name}.pid")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Asks the API server for `path` with the admin token; the HTTP status, or None when it
/// does not answer.
fn api_status(server: &str, ca: &Path, token: &str, path: &str) -> Option<u16> {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(ca)
        .arg("-H")
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{server}{path}"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .ok()
        .filter(|c| *c != 0)
}

/// What a running cluster left in its run folder.
struct Running {
    server: String,
}

fn running() -> Option<Running> {
    let dir = run_dir();
    let server = fs::read_to_string(dir.join("server")).ok()?;
    let token = fs::read_to_string(dir.join("pki/admin.token")).ok()?;
    let all_alive = ["etcd", "kube-apiserver", "kube-controller-manager"]
        .iter()
        .all(|n| pid_of(&dir, n).is_some_and(alive));
    let ok = all_alive
        && api_status(
            server.trim(),
            &dir.join("pki/ca.crt"),
            token.trim(),
            "/readyz",
        ) == Some(200);
    ok.then(|| Running {
        server: server.trim().to_owned(),
    })
}

/// Builds (once) and starts etcd, kube-apiserver and kube-controller-manager; returns the
/// kubeconfig. Reuses servers that are already up.
///
/// # Errors
/// When a binary cannot be built or a server does not come up; what was started is
/// stopped again.
pub fn up() -> anyhow::Result<PathBuf> {
    if let Some(r) = running() {
        eprintln!(
            "k8s: already up at {} ({})",
            r.server,
            kubeconfig_path().display()
        );
        return Ok(kubeconfig_path());
    }
    let started = Instant::now();
    ensure_packages()?;
    ensure_binaries()?;
    // Leftovers of a crashed run: stop whatever is still there and start clean.
    down()?;
    match start() {
        Ok(path) => {
            eprintln!(
                "k8s: up in {:.1}s; export KUBECONFIG={}",
                started.elapsed().as_secs_f64(),
                path.display()
            );
            Ok(path)
        }
        Err(e) => {
            let logs: String = ["etcd", "kube-apiserver", "kube-controller-manager"]
                .iter()
                .map(|n| {
                    let p = run_dir().join(format!("{n}.log"));
                    format!("--- {} (last lines)\n{}\n", p.display(), tail(&p, 15))
                })
                .collect();
            let _ = down();
            Err(e.context(logs))
        }
    }
}

fn start() -> anyhow::Result<PathBuf> {
    let dir = run_dir();
    let pki = dir.join("pki");
    fs::create_dir_all(&pki).with_context(|| format!("cannot create {}", pki.display()))?;
    make_pki(&pki)?;
    let admin = random_hex()?;
    let limited = random_hex()?;
    fs::write(pki.join("admin.token"), &admin)?;
    fs::write(
        pki.join("tokens.csv"),
        format!(
            "{admin},agentsafe-admin,uid-admin,\"system:masters\"\n{limited},agentsafe-limited,uid-limited,\n"
        ),
    )?;
    let bin = bin_dir();

    let (client, peer, secure) = (free_port()?, free_port()?, free_port()?);
    let mut etcd = Command::new("etcd");
    etcd.arg("--name=agentsafe")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!(
            "--initial-cluster=agentsafe=http://127.0.0.1:{peer}"
        ))
        .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
    spawn(&dir, "etcd", etcd)?;

    let server = format!("https://127.0.0.1:{secure}");
    let p = |f: &str| pki.join(f).display().to_string();
    let mut api = Command::new(bin.join("kube-apiserver"));
    api.arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={secure}"))
        .arg("--insecure-port=0")
        .arg(format!("--cert-dir={}", p("serving")))
        .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
        .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
        .arg(format!("--client-ca-file={}", p("ca.crt")))
        .arg(format!("--token-auth-file={}", p("tokens.csv")))
        .arg("--authorization-mode=RBAC")
        .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
        .arg(format!("--service-account-key-file={}", p("sa.pub")))
        .arg(format!(
            "--service-account-signing-key-file={}",
            p("sa.key")
        ))
        .arg("--api-audiences=https://kubernetes.default.svc.cluster.local")
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--endpoint-reconciler-type=none")
        .arg("--disable-admission-plugins=ServiceAccount")
        .arg("--enable-priority-and-fairness=false")
        .arg("--profiling=false");
    spawn(&dir, "kube-apiserver", api)?;

    let ca = pki.join("ca.crt");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if api_status(&server, &ca, &admin, "/readyz") == Some(200) {
            break;
        }
        for n in ["etcd", "kube-apiserver"] {
            if !pid_of(&dir, n).is_some_and(alive) {
                bail!("{n} exited during startup");
            }
        }
        if Instant::now() > deadline {
            bail!("kube-apiserver did not become ready at {server} within 180s");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    fs::write(dir.join("server"), &server)?;
    let kubeconfig = kubeconfig_path();
    write_kubeconfig(&kubeconfig, &server, &ca, &admin, &limited)?;

    let mut cm = Command::new(bin.join("kube-controller-manager"));
    cm.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--controllers={CONTROLLERS}"))
        .arg("--leader-elect=false")
        .arg("--port=0")
        .arg("--secure-port=0")
        .arg("--use-service-account-credentials=false");
    spawn(&dir, "kube-controller-manager", cm)?;
    std::thread::sleep(Duration::from_secs(1));
    if !pid_of(&dir, "kube-controller-manager").is_some_and(alive) {
        bail!("kube-controller-manager exited during startup");
    }
    let mut env = fs::File::create(dir.join("env"))?;
    writeln!(env, "KUBECONFIG={}", kubeconfig.display())?;
    Ok(kubeconfig)
}

/// A throwaway CA, a serving certificate for 127.0.0.1/localhost, and the service account
/// signing key pair.
fn make_pki(pki: &Path) -> anyhow::Result<()> {
    let ossl = |args: &[&str]| {
        let mut c = Command::new("openssl");
        c.args(args).current_dir(pki);
        quiet(
            &format!("openssl {}", args.first().copied().unwrap_or_default()),
            c,
        )
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "3650",
        "-subj",
        "/CN=agentsafe-test-ca",
    ];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.crt"]);
    ossl(&ca)?;
    let mut csr = vec!["req", "-subj", "/CN=kube-apiserver"];
    csr.extend_from_slice(&ec);
    csr.extend_from_slice(&["-keyout", "apiserver.key", "-out", "apiserver.csr"]);
    ossl(&csr)?;
    fs::write(
        pki.join("apiserver.ext"),
        "basicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,IP:10.0.0.1\n",
    )?;
    ossl(&[
        "x509",
        "-req",
        "-in",
        "apiserver.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        "apiserver.ext",
        "-out",
        "apiserver.crt",
    ])?;
    ossl(&["genrsa", "-out", "sa.key", "2048"])?;
    ossl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    admin: &str,
    limited: &str,
) -> anyhow::Result<()> {
    let ca = ca.display();
    let text = format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: agentsafe\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n\
         - name: agentsafe-admin\n  user:\n    token: {admin}\n\
         - name: agentsafe-limited\n  user:\n    token: {limited}\n\
         contexts:\n\
         - name: agentsafe\n  context:\n    cluster: agentsafe\n    user: agentsafe-admin\n\
         - name: agentsafe-limited\n  context:\n    cluster: agentsafe\n    user: agentsafe-limited\n\
         current-context: agentsafe\n"
    );
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Stops the servers `up` started (controller manager, API server, then etcd) and removes
/// their run folder; the cached binaries stay.
///
/// # Errors
/// When the run folder cannot be removed.
pub fn down() -> anyhow::Result<()> {
    let dir = run_dir();
    for name in ["kube-controller-manager", "kube-apiserver", "etcd"] {
        let Some(pid) = pid_of(&dir, name) else {
            continue;
        };
        if !alive(pid) {
            continue;
        }
        let _ = Command::new("kill").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if alive(pid) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    Ok(())
}

/// The Debian packages the build and the servers need, installed when missing.
///
/// # Errors
/// When apt-get fails.
pub fn ensure_packages() -> anyhow::Result<()> {
    crate::apt_install(&[
        ("go", "golang-go"),
        ("rsync", "rsync"),
        ("jq", "jq"),
        ("etcd", "etcd-server"),
        ("curl", "curl"),
        (REFLECT2_DEBIAN, "golang-github-modern-go-reflect2-dev"),
        ("openssl", "openssl"),
        ("make", "make"),
    ])
}

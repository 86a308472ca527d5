//! A real PostgreSQL for the study-store tests, from the distribution's
//! packages (`.ci/run` installs them when missing): `initdb` and `pg_ctl`
//! in a temporary folder, on a free port, as user `postgres` when the tests
//! run as root (`initdb` refuses root). Stopped when dropped. A variant
//! serves TLS (`ssl=on`) with a certificate the test made, and a server can
//! be restarted (`pg_ctl restart`) under a running study.

use std::path::PathBuf;
use std::process::Command;

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// The newest `/usr/lib/postgresql/N/bin` with initdb and pg_ctl.
fn bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|bin| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file());
    versions.sort();
    versions.pop().expect(
        "PostgreSQL is not installed (no /usr/lib/postgresql/N/bin/initdb): install the distribution's \
         `postgresql` package (.ci/run does)",
    )
}

/// A server certificate for `host` signed by a CA made for the test.
pub struct TestCertificates {
    /// The CA's certificate, PEM (what `sslrootcert` names).
    pub ca_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
}

impl TestCertificates {
    pub fn for_host(host: &str) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "servetune test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec![host.to_string()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        Self {
            ca_pem: ca.pem(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
        }
    }
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that offers TLS with `certificates` (plain text still allowed).
    pub fn start_with_tls(certificates: &TestCertificates) -> Self {
        Self::start_with(Some(certificates))
    }

    fn start_with(tls: Option<&TestCertificates>) -> Self {
        let bin = bin();
        let dir = tempfile::Builder::new().prefix("servetune-pg-").tempdir().unwrap();
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let port = super::free_port();
        let data = dir.path().join("data");
        let postgres = Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        postgres.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off",
            postgres.dir.path().display()
        );
        if let Some(certificates) = tls {
            options.push_str(&postgres.install_certificates(&data, certificates));
        }
        std::fs::write(postgres.dir.path().join("options"), &options).unwrap();
        postgres.pg_ctl("start");
        postgres
    }

    /// Writes the server's certificate and key (mode 0600, owned by the
    /// server's user) into its data folder; returns the options that use them.
    fn install_certificates(&self, data: &std::path::Path, certificates: &TestCertificates) -> String {
        use std::os::unix::fs::PermissionsExt as _;
        let (cert, key) = (data.join("server.crt"), data.join("server.key"));
        std::fs::write(&cert, &certificates.server_pem).unwrap();
        std::fs::write(&key, &certificates.server_key_pem).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_postgres {
            let user = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
            assert!(!user.is_null(), "no user postgres");
            let (uid, gid) = unsafe { ((*user).pw_uid, (*user).pw_gid) };
            for file in [&cert, &key] {
                std::os::unix::fs::chown(file, Some(uid), Some(gid)).unwrap();
            }
        }
        format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert.display(),
            key.display()
        )
    }

    /// `pg_ctl start|restart` with this server's options (waits until it
    /// accepts connections).
    fn pg_ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let options = std::fs::read_to_string(self.dir.path().join("options")).unwrap();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-m",
                "fast",
                "-o",
                &options,
                action,
            ],
        );
    }

    /// Restarts the server: every connection is cut (clients see the
    /// database shutting down, then refused connections until it is back).
    pub fn restart(&self) {
        self.pg_ctl("restart");
    }

    /// A URL for the `postgres` superuser's database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A URL through the server's Unix socket (no host name: no TLS).
    pub fn socket_url(&self) -> String {
        let dir = self.dir.path().display().to_string().replace('/', "%2F");
        format!("postgres://postgres@{dir}:{}/postgres", self.port)
    }

    /// Runs SQL through psql (for what servetune does not do itself).
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-tAc",
                sql,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run(
                "pg_ctl",
                &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"],
            );
        }));
    }
}

//! Bad input, as a table: each case runs the servetune binary on a small
//! deployment folder with one thing wrong, and must end with a non-zero
//! exit, one error that names the file and key (or the flag), no file
//! changed, no results written and no TorchServe started. None of these
//! needs a TorchServe: they must be refused before one is ever reached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A deployment folder that `tune` would accept as it is.
struct Folder {
    dir: tempfile::TempDir,
}

const CONFIG: &str = "inference_address=http://127.0.0.1:1\nmanagement_address=http://127.0.0.1:2\n\
metrics_address=http://127.0.0.1:3\nload_models=tiny.mar\nmodels={\"tiny\": {\"1.0\": {\"marName\": \"tiny.mar\", \
\"minWorkers\": 1, \"maxWorkers\": 1, \"batchSize\": 1, \"maxBatchDelay\": 100}}}\n";
const TARGET: &str = "config = \"config.properties\"\nmodel_store = \"model-store\"\nwork_dir = \"run\"\n\
torchserve = \"/nonexistent/torchserve\"\n";
const SPACE: &str = "[[parameter]]\nname = \"batch_size\"\nkind = \"pow2\"\nmin = 1\nmax = 8\ndefault = 1\n\
target = \"models.{model}.batchSize\"\napply = \"hot\"\n\n[[parameter]]\nname = \"workers\"\nkind = \"int\"\n\
min = 1\nmax = 2\ndefault = 1\ntarget = [\"models.{model}.minWorkers\", \"models.{model}.maxWorkers\"]\napply = \"hot\"\n";
const STUDY: &str =
    "name = \"s\"\ntarget = \"target.toml\"\nspace = \"space.toml\"\nmodel = \"tiny\"\nbudget = \"5m\"\n\
[workload]\nbody = \"bodies\"\nusers = 4\nduration = \"3s\"\n[constraints]\np99_ms = 50\n";
const STACK: &str = "torchserve = \"target.toml\"\n[gateway]\nconfig = \"tensorzero.toml\"\n\
[[models]]\nname = \"tiny\"\nroute = \"embeddings\"\nbody = \"request.json\"\np99_ms = 100\n";
const GATEWAY: &str = "[embedding_models.tiny.providers.ts]\ntype = \"openai\"\n\
api_base = \"http://127.0.0.1:1/predictions/tiny/1.0/v1/\"\napi_key_location = \"none\"\n";
const LANDSCAPE: &str = "a,b,throughput_rps,p50_ms,p99_ms,error_rate,memory_mb\n1,1,10,1,2,0,100\n2,1,12,1,2,0,100\n";

impl Folder {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("config.properties", CONFIG),
            ("target.toml", TARGET),
            ("space.toml", SPACE),
            ("study.toml", STUDY),
            ("landscape.csv", LANDSCAPE),
            ("stack.toml", STACK),
            ("tensorzero.toml", GATEWAY),
            ("request.json", "{\"input\": \"x\"}"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("model-store")).unwrap();
        std::fs::create_dir_all(dir.path().join("bodies")).unwrap();
        std::fs::write(dir.path().join("bodies/a.bin"), b"x").unwrap();
        for model in ["tiny", "other", "ghost"] {
            let folder = dir.path().join("per-model").join(model);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("a.bin"), b"x").unwrap();
        }
        let log: String = ["tiny", "ghost", "tiny"]
            .iter()
            .enumerate()
            .map(|(i, model)| {
                format!("2026-11-28T10:00:0{i},000 - /127.0.0.1:1 \"POST /predictions/{model} HTTP/1.1\" 200 3\n")
            })
            .collect();
        std::fs::write(dir.path().join("access.log"), log).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces `from` with `to` in file `name` (which must contain it).
    fn edit(&self, name: &str, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.path(name)).unwrap();
        assert!(text.contains(from), "{name} has '{from}'");
        std::fs::write(self.path(name), text.replacen(from, to, 1)).unwrap();
    }

    /// Every file under the folder and its bytes.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut out);
        out
    }
}

/// One case: what to break, what to run, what the error must name.
struct Case {
    what: &'static str,
    edits: &'static [(&'static str, &'static str, &'static str)],
    args: &'static [&'static str],
    expected: &'static [&'static str],
}

const TUNE: &[&str] = &["tune", "--study", "study.toml", "--results-dir", "results"];

fn case(
    what: &'static str,
    edits: &'static [(&'static str, &'static str, &'static str)],
    args: &'static [&'static str],
    expected: &'static [&'static str],
) -> Case {
    Case {
        what,
        edits,
        args,
        expected,
    }
}

fn cases() -> Vec<Case> {
    let study = |from, to| -> &'static [(&'static str, &'static str, &'static str)] {
        Box::leak(vec![("study.toml", from, to)].into_boxed_slice())
    };
    let space = |from, to| -> &'static [(&'static str, &'static str, &'static str)] {
        Box::leak(vec![("space.toml", from, to)].into_boxed_slice())
    };
    let target = |from, to| -> &'static [(&'static str, &'static str, &'static str)] {
        Box::leak(vec![("target.toml", from, to)].into_boxed_slice())
    };
    let config = |from, to| -> &'static [(&'static str, &'static str, &'static str)] {
        Box::leak(vec![("config.properties", from, to)].into_boxed_slice())
    };
    vec![
        // The study file.
        // Several models.
        case(
            "a mix whose shares sum to 0",
            Box::leak(
                vec![
                    ("study.toml", "model = \"tiny\"", "models = [\"tiny\", \"other\"]"),
                    ("study.toml", "users = 4", "users = 4\nmix = { tiny = 0, other = 0 }"),
                ]
                .into_boxed_slice(),
            ),
            TUNE,
            &["study.toml", "mix", "sum to 0"],
        ),
        case(
            "a mix naming a model the study does not tune",
            study("users = 4", "users = 4\nmix = { tiny = 1 }"),
            TUNE,
            &["study.toml", "mix", "several models"],
        ),
        case(
            "a model the config does not serve",
            Box::leak(
                vec![
                    ("study.toml", "model = \"tiny\"", "models = [\"tiny\", \"ghost\"]"),
                    ("study.toml", "body = \"bodies\"", "body_dir = \"per-model\""),
                ]
                .into_boxed_slice(),
            ),
            TUNE,
            &["config.properties", "'ghost'"],
        ),
        case(
            "several models without a folder of bodies each",
            study("model = \"tiny\"", "models = [\"tiny\", \"other\"]"),
            TUNE,
            &["study.toml", "body_dir"],
        ),
        case(
            "a replayed log naming a model the config does not serve",
            Box::leak(
                vec![
                    (
                        "study.toml",
                        "users = 4",
                        "replay = \"access.log\"\nloop = true\nsteady = false",
                    ),
                    ("study.toml", "body = \"bodies\"", "body_dir = \"per-model\""),
                ]
                .into_boxed_slice(),
            ),
            TUNE,
            &["access.log", "'ghost'", "config.properties"],
        ),
        case(
            "a replay window with no inference requests",
            Box::leak(
                vec![
                    (
                        "study.toml",
                        "users = 4",
                        "replay = \"access.log\"\nfrom = \"+1h\"\nsteady = false",
                    ),
                    ("study.toml", "body = \"bodies\"", "body_dir = \"per-model\""),
                ]
                .into_boxed_slice(),
            ),
            TUNE,
            &["study.toml", "no inference requests"],
        ),
        case(
            "limits of a model the study does not tune",
            study("p99_ms = 50", "p99_ms = 50\n[constraints.ghost]\np99_ms = 5"),
            TUNE,
            &["study.toml", "[constraints.ghost]"],
        ),
        case(
            "a zero window",
            study("duration = \"3s\"", "duration = \"0s\""),
            TUNE,
            &["study.toml", "duration"],
        ),
        case(
            "a negative warm-up",
            study("duration = \"3s\"", "duration = \"3s\"\nwarmup = \"-1s\""),
            TUNE,
            &["study.toml", "warmup"],
        ),
        case(
            "a budget too short",
            study("budget = \"5m\"", "budget = \"5s\""),
            TUNE,
            &["study.toml", "budget"],
        ),
        case(
            "no trials allowed",
            study("budget = \"5m\"", "budget = \"5m\"\nmax_trials = 0"),
            TUNE,
            &["study.toml", "max_trials"],
        ),
        case(
            "zero users",
            study("users = 4", "users = 0"),
            TUNE,
            &["study.toml", "users"],
        ),
        case(
            "users and a rate",
            study("users = 4", "users = 4\nrate = 10.0"),
            TUNE,
            &["study.toml", "exactly one"],
        ),
        case(
            "a negative rate",
            study("users = 4", "rate = -5.0"),
            TUNE,
            &["study.toml", "rate"],
        ),
        case(
            "one confirmation round",
            study("duration = \"3s\"", "duration = \"3s\"\nconfirm_rounds = 1"),
            TUNE,
            &["study.toml", "confirm_rounds"],
        ),
        case(
            "a zero confirmation window",
            study("duration = \"3s\"", "duration = \"3s\"\nconfirm_duration = \"0s\""),
            TUNE,
            &["study.toml", "confirm_duration"],
        ),
        case(
            "a cap below the window",
            study("duration = \"3s\"", "duration = \"3s\"\nmax_window = \"1s\""),
            TUNE,
            &["study.toml", "max_window"],
        ),
        case(
            "a cap without steady windows",
            study(
                "duration = \"3s\"",
                "duration = \"3s\"\nsteady = false\nmax_window = \"9s\"",
            ),
            TUNE,
            &["study.toml", "max_window"],
        ),
        case(
            "a zero SLO",
            study("p99_ms = 50", "p99_ms = 0"),
            TUNE,
            &["study.toml", "p99_ms"],
        ),
        case(
            "an SLO that is a word",
            study("p99_ms = 50", "p99_ms = \"fast\""),
            TUNE,
            &["study.toml", "p99_ms"],
        ),
        case(
            "an error rate over 1",
            study("p99_ms = 50", "p99_ms = 50\nerror_rate = 2.0"),
            TUNE,
            &["study.toml", "error_rate"],
        ),
        case(
            "all weights zero",
            study(
                "[constraints]",
                "[objectives]\nthroughput = 0.0\np99 = 0.0\nmemory = 0.0\n[constraints]",
            ),
            TUNE,
            &["study.toml", "objectives"],
        ),
        case(
            "a negative weight",
            study(
                "[constraints]",
                "[objectives]\nthroughput = -1.0\np99 = 1.0\nmemory = 0.0\n[constraints]",
            ),
            TUNE,
            &["study.toml", "objectives"],
        ),
        case(
            "a negative memory cap",
            study("p99_ms = 50", "p99_ms = 50\nmemory_mb = -1.0"),
            TUNE,
            &["study.toml", "memory_mb"],
        ),
        case(
            "a name that is a path",
            study("name = \"s\"", "name = \"a/b\""),
            TUNE,
            &["study.toml", "name"],
        ),
        case(
            "an unknown key",
            study("budget = \"5m\"", "budget = \"5m\"\nbogus = 1"),
            TUNE,
            &["study.toml", "bogus"],
        ),
        case(
            "a syntax error",
            study("model = \"tiny\"", "model = \"tiny"),
            TUNE,
            &["study.toml", "line"],
        ),
        case(
            "a model the config does not serve",
            study("model = \"tiny\"", "model = \"big\""),
            TUNE,
            &["config.properties", "'big'"],
        ),
        case(
            "an empty model",
            study("model = \"tiny\"", "model = \"\""),
            TUNE,
            &["study.toml", "model"],
        ),
        case(
            "a missing body",
            study("body = \"bodies\"", "body = \"nowhere\""),
            TUNE,
            &["nowhere"],
        ),
        case(
            "a missing target file",
            study("target = \"target.toml\"", "target = \"nope.toml\""),
            TUNE,
            &["nope.toml"],
        ),
        case(
            "a missing space file",
            study("space = \"space.toml\"", "space = \"nope.toml\""),
            TUNE,
            &["nope.toml"],
        ),
        case(
            "a content type over two lines",
            study("users = 4", "users = 4\ncontent_type = \"a\\nb\""),
            TUNE,
            &["study.toml", "content_type"],
        ),
        // The space file.
        case(
            "negative workers",
            space("min = 1\nmax = 2\ndefault = 1", "values = [-1, 1]\ndefault = 1"),
            TUNE,
            &["space.toml", "workers", "level -1"],
        ),
        case(
            "a property TorchServe does not have",
            space(
                "models.{model}.batchSize\"\napply = \"hot\"",
                "job_queue_sise\"\napply = \"cold\"",
            ),
            TUNE,
            &["space.toml", "job_queue_sise"],
        ),
        case(
            "a cold target declared hot",
            space(
                "models.{model}.batchSize\"\napply = \"hot\"",
                "job_queue_size\"\napply = \"hot\"",
            ),
            TUNE,
            &["space.toml", "cold"],
        ),
        case(
            "a default outside the domain",
            space("max = 8\ndefault = 1", "max = 8\ndefault = 3"),
            TUNE,
            &["space.toml", "outside its domain"],
        ),
        case(
            "a condition on nothing",
            space("apply = \"hot\"\n\n", "apply = \"hot\"\nwhen = \"zz > 1\"\n\n"),
            TUNE,
            &["space.toml", "zz"],
        ),
        case(
            "an empty domain",
            space("min = 1\nmax = 2\ndefault = 1", "values = []\ndefault = 1"),
            TUNE,
            &["space.toml", "domain is empty"],
        ),
        case(
            "a log level that is not one",
            space(
                "models.{model}.batchSize\"\napply = \"hot\"",
                "log4j.level\"\napply = \"cold\"",
            ),
            TUNE,
            &["space.toml", "log4j.level"],
        ),
        case(
            "an unknown model field",
            space("models.{model}.batchSize", "models.{model}.batchSise"),
            TUNE,
            &["space.toml", "batchSise"],
        ),
        // The target file.
        case(
            "a blank restart command",
            target(
                "model_store = \"model-store\"\nwork_dir = \"run\"\ntorchserve = \"/nonexistent/torchserve\"\n",
                "restart_command = [\" \"]\n",
            ),
            TUNE,
            &["target.toml", "blank"],
        ),
        case(
            "an unknown target key",
            target("work_dir = \"run\"", "work_dir = \"run\"\nworkdir = \"x\""),
            TUNE,
            &["target.toml", "workdir"],
        ),
        case(
            "an environment for a service",
            target(
                "model_store = \"model-store\"\nwork_dir = \"run\"\ntorchserve = \"/nonexistent/torchserve\"\n",
                "restart_command = [\"true\"]\n[environment]\nA = \"1\"\n",
            ),
            TUNE,
            &["target.toml", "[environment]"],
        ),
        case(
            "an environment target for a service",
            &[
                (
                    "target.toml",
                    "model_store = \"model-store\"\nwork_dir = \"run\"\ntorchserve = \"/nonexistent/torchserve\"\n",
                    "restart_command = [\"true\"]\n",
                ),
                (
                    "space.toml",
                    "target = \"models.{model}.batchSize\"\napply = \"hot\"",
                    "target = \"env.OMP_NUM_THREADS\"\napply = \"cold\"",
                ),
            ],
            TUNE,
            &["space.toml", "OMP_NUM_THREADS", "restart_command"],
        ),
        case(
            "a ca_file that does not exist",
            target("work_dir = \"run\"", "work_dir = \"run\"\nca_file = \"nope.pem\""),
            TUNE,
            &["target.toml", "ca_file", "nope.pem", "cannot read"],
        ),
        case(
            "a ca_file that is not PEM",
            target(
                "work_dir = \"run\"",
                "work_dir = \"run\"\nca_file = \"config.properties\"",
            ),
            TUNE,
            &["target.toml", "ca_file", "no PEM certificate"],
        ),
        case(
            "insecure_tls not a boolean",
            target("work_dir = \"run\"", "work_dir = \"run\"\ninsecure_tls = \"yes\""),
            TUNE,
            &["target.toml", "line 4", "insecure_tls", "boolean"],
        ),
        case(
            "both ca_file and insecure_tls",
            target(
                "work_dir = \"run\"",
                "work_dir = \"run\"\nca_file = \"ca.pem\"\ninsecure_tls = true",
            ),
            TUNE,
            &["target.toml", "ca_file", "insecure_tls", "both set"],
        ),
        // The config file.
        case(
            "a broken escape in the config",
            config("load_models=tiny.mar", "load_models=\\u12"),
            TUNE,
            &["config.properties:4", "escape"],
        ),
        case(
            "two addresses on one port",
            config(
                "metrics_address=http://127.0.0.1:3",
                "metrics_address=http://127.0.0.1:1",
            ),
            TUNE,
            &["config.properties", "port 1"],
        ),
        case(
            "broken models JSON",
            config("\"maxBatchDelay\": 100}}}", "\"maxBatchDelay\": 100}}"),
            TUNE,
            &["config.properties", "models"],
        ),
        // bench flags.
        case(
            "bench with no users",
            &[],
            &["bench", "--url", "http://127.0.0.1:1/x", "--users", "0"],
            &["--users"],
        ),
        case(
            "bench a negative window",
            &[],
            &[
                "bench",
                "--url",
                "http://127.0.0.1:1/x",
                "--users",
                "1",
                "--duration",
                "-1s",
            ],
            &["--duration", "negative"],
        ),
        case(
            "bench a zero rate",
            &[],
            &["bench", "--url", "http://127.0.0.1:1/x", "--rate", "0"],
            &["--rate"],
        ),
        case(
            "bench an error rate over 1",
            &[],
            &[
                "bench",
                "--url",
                "http://127.0.0.1:1/x",
                "--users",
                "1",
                "--max-error-rate",
                "2",
            ],
            &["--max-error-rate"],
        ),
        case(
            "bench no threads",
            &[],
            &[
                "bench",
                "--url",
                "http://127.0.0.1:1/x",
                "--users",
                "1",
                "--threads",
                "0",
            ],
            &["--threads"],
        ),
        case(
            "bench a URL that is not one",
            &[],
            &["bench", "--url", "127.0.0.1:1/x", "--users", "1"],
            &["--url"],
        ),
        // apply.
        case(
            "apply a value over two lines",
            &[],
            &["apply", "--config", "config.properties", "--set", "job_queue_size=1\n2"],
            &["job_queue_size", "one line"],
        ),
        case(
            "apply an unknown model field",
            &[],
            &[
                "apply",
                "--config",
                "config.properties",
                "--set",
                "models.tiny.batchSise=2",
            ],
            &["batchSise"],
        ),
        case(
            "apply a value TorchServe refuses",
            &[],
            &["apply", "--config", "config.properties", "--set", "job_queue_size=0"],
            &["job_queue_size"],
        ),
        case(
            "apply a model the config lacks",
            &[],
            &[
                "apply",
                "--config",
                "config.properties",
                "--set",
                "models.big.batchSize=2",
            ],
            &["config.properties", "big"],
        ),
        case(
            "apply an environment without a target",
            &[],
            &[
                "apply",
                "--config",
                "config.properties",
                "--set",
                "env.OMP_NUM_THREADS=1",
            ],
            &["--target"],
        ),
        case(
            "apply a log level that is not one",
            &[],
            &["apply", "--config", "config.properties", "--set", "log4j.level=loud"],
            &["log4j.level"],
        ),
        // apply --from: deploying a recommended tier.
        case(
            "apply --from a folder that is not a tier",
            &[],
            &["apply", "--from", "bodies", "--target", "target.toml", "--restart"],
            &["--from bodies", "not a tier folder", "tier.json"],
        ),
        case(
            "apply --from a folder that does not exist",
            &[],
            &["apply", "--from", "nope", "--target", "target.toml", "--restart"],
            &["--from nope", "not a folder"],
        ),
        case(
            "apply --from without --restart or --hot",
            &[],
            &["apply", "--from", "bodies", "--target", "target.toml"],
            &["--from bodies", "--restart", "--hot"],
        ),
        case(
            "apply --from without a target",
            &[],
            &["apply", "--from", "bodies", "--restart"],
            &["--target"],
        ),
        case(
            "apply --from with --set",
            &[],
            &[
                "apply",
                "--from",
                "bodies",
                "--target",
                "target.toml",
                "--restart",
                "--set",
                "job_queue_size=2",
            ],
            &["--from", "--set"],
        ),
        // compare.
        case(
            "compare one round",
            &[],
            &["compare", "--stack", "stack.toml", "--rounds", "1"],
            &["--rounds"],
        ),
        case(
            "compare a model the stack does not have",
            &[],
            &["compare", "--stack", "stack.toml", "--models", "gpt2"],
            &["--models", "stack.toml", "it has: tiny"],
        ),
        case(
            "compare a route the gateway does not serve",
            &[("stack.toml", "embeddings", "completions")],
            &["compare", "--stack", "stack.toml"],
            &["stack.toml", "route 'completions'"],
        ),
        case(
            "compare through a gateway pointed at another port",
            &[("tensorzero.toml", "127.0.0.1:1/", "127.0.0.1:9/")],
            &["compare", "--stack", "stack.toml"],
            &["tensorzero.toml", "embedding_models.tiny.providers.ts.api_base"],
        ),
        case(
            "compare through a gateway without the model",
            &[("tensorzero.toml", "embedding_models.tiny", "embedding_models.other")],
            &["compare", "--stack", "stack.toml"],
            &["tensorzero.toml", "no [embedding_models.tiny]"],
        ),
        case(
            "compare with a body that is not JSON",
            &[("request.json", "{", "")],
            &["compare", "--stack", "stack.toml"],
            &["request.json", "not JSON"],
        ),
        // A stack study (the gateway in front).
        case(
            "a study naming both a target and a stack",
            study(
                "target = \"target.toml\"",
                "target = \"target.toml\"\nstack = \"stack.toml\"",
            ),
            TUNE,
            &["study.toml", "exactly one of target"],
        ),
        case(
            "a stack study without the gateway's python",
            study("target = \"target.toml\"", "stack = \"stack.toml\""),
            TUNE,
            &["stack.toml", "no python"],
        ),
        case(
            "a stack study whose gateway config is broken",
            &[
                ("study.toml", "target = \"target.toml\"", "stack = \"stack.toml\""),
                (
                    "tensorzero.toml",
                    "[embedding_models.tiny.providers.ts]",
                    "[embedding_models.tiny.providers.ts",
                ),
            ],
            TUNE,
            &["tensorzero.toml:1"],
        ),
        case(
            "a gateway parameter in a study without a gateway",
            space(
                "apply = \"hot\"\n\n",
                "apply = \"hot\"\n\n[[parameter]]\nname = \"gw\"\nkind = \"int\"\nvalues = [1, 2]\ndefault = 1\n\
                 target = \"gateway.env.TOKIO_WORKER_THREADS\"\napply = \"hot\"\n\n",
            ),
            TUNE,
            &["space.toml", "'gw'", "no gateway in front"],
        ),
        case(
            "a gateway variable for a gateway a service manager starts",
            &[
                ("study.toml", "target = \"target.toml\"", "stack = \"stack.toml\""),
                (
                    "stack.toml",
                    "config = \"tensorzero.toml\"\n",
                    "config = \"tensorzero.toml\"\nrestart_command = [\"systemctl\", \"restart\", \"tz\"]\n\
                     url = \"http://127.0.0.1:1\"\n",
                ),
                (
                    "space.toml",
                    "apply = \"hot\"\n\n",
                    "apply = \"hot\"\n\n[[parameter]]\nname = \"gw\"\nkind = \"int\"\nvalues = [1, 2]\n\
                     default = 1\ntarget = \"gateway.env.TOKIO_WORKER_THREADS\"\napply = \"hot\"\n\n",
                ),
            ],
            TUNE,
            &["space.toml", "gateway.env.TOKIO_WORKER_THREADS", "Environment="],
        ),
        case(
            "a parameter in two space files",
            study("space = \"space.toml\"", "space = [\"space.toml\", \"space.toml\"]"),
            TUNE,
            &["space.toml", "'batch_size' is also in"],
        ),
        case(
            "apply a gateway setting",
            &[],
            &[
                "apply",
                "--config",
                "config.properties",
                "--set",
                "gateway.env.RUST_LOG=warn",
            ],
            &["--set gateway.env.RUST_LOG", "stack study"],
        ),
        case(
            "compare a stack whose TOML is broken",
            &[("stack.toml", "[gateway]", "[gateway")],
            &["compare", "--stack", "stack.toml"],
            &["stack.toml", "line 2"],
        ),
        // Shared studies.
        case(
            "a heartbeat grace too short",
            study("budget = \"5m\"", "budget = \"5m\"\nheartbeat_grace = \"1s\""),
            TUNE,
            &["study.toml", "heartbeat_grace"],
        ),
        case(
            "a storage that is not PostgreSQL",
            &[],
            &["tune", "--study", "study.toml", "--storage", "mysql://tuner@db/x"],
            &["--storage", "mysql://tuner@db/x", "postgres://"],
        ),
        case(
            "a worker on the file journal",
            &[],
            &["worker", "--storage", "file", "--study", "s", "--target", "target.toml"],
            &["--storage", "shared store"],
        ),
        case(
            "a worker without its target file",
            &[],
            &[
                "worker",
                "--storage",
                "postgres://tuner@127.0.0.1:1/studies",
                "--study",
                "s",
                "--target",
                "nope.toml",
            ],
            &["--target nope.toml"],
        ),
        case(
            "a worker whose store cannot be reached",
            &[],
            &[
                "worker",
                "--storage",
                "postgres://tuner:s3cret@127.0.0.1:1/studies",
                "--study",
                "s",
                "--target",
                "target.toml",
            ],
            &["postgres://tuner:***@127.0.0.1:1/studies", "cannot connect"],
        ),
        case(
            "a storage with an unknown sslmode",
            &[],
            &[
                "tune",
                "--study",
                "study.toml",
                "--storage",
                "postgres://tuner:s3cret@127.0.0.1:1/studies?sslmode=verify-maybe",
            ],
            &["--storage", "sslmode=verify-maybe", "verify-full", "tuner:***@"],
        ),
        case(
            "a storage whose sslrootcert does not exist",
            &[],
            &[
                "worker",
                "--storage",
                "postgres://tuner@127.0.0.1:1/studies?sslmode=verify-full&sslrootcert=nope-ca.pem",
                "--study",
                "s",
                "--target",
                "target.toml",
            ],
            &["--storage", "sslrootcert=nope-ca.pem", "no such file"],
        ),
        case(
            "a storage that checks certificates without a CA",
            &[],
            &[
                "studies",
                "--storage",
                "postgres://tuner@127.0.0.1:1/studies?sslmode=verify-ca",
            ],
            &["--storage", "sslmode=verify-ca", "sslrootcert"],
        ),
        // Warm start.
        case(
            "a warm start from a folder that holds no study",
            &[],
            &[
                "tune",
                "--study",
                "study.toml",
                "--results-dir",
                "results",
                "--warm-start",
                "nope",
            ],
            &["--warm-start nope", "fingerprint.json"],
        ),
        // replay.
        case(
            "replay a landscape with NaN",
            &[("landscape.csv", "2,1,12", "NaN,1,12")],
            &["replay", "--landscape", "landscape.csv", "--slo-p99-ms", "25"],
            &["landscape.csv:3", "NaN"],
        ),
        case(
            "replay a zero SLO",
            &[],
            &["replay", "--landscape", "landscape.csv", "--slo-p99-ms", "0"],
            &["--slo-p99-ms"],
        ),
        case(
            "replay a negative restart cost",
            &[],
            &[
                "replay",
                "--landscape",
                "landscape.csv",
                "--slo-p99-ms",
                "25",
                "--restart-s=-1",
            ],
            &["--restart-s"],
        ),
        case(
            "replay a missing landscape",
            &[],
            &["replay", "--landscape", "nope.csv", "--slo-p99-ms", "25"],
            &["nope.csv"],
        ),
        case(
            "replay a landscape whose model features are incomplete",
            &[(
                "landscape.csv",
                "a,b,",
                "# servetune-landscape model=m latency_ms=3\na,b,",
            )],
            &["replay", "--landscape", "landscape.csv", "--slo-p99-ms", "25"],
            &["landscape.csv:1", "all three"],
        ),
        case(
            "replay --prior on a landscape without model features",
            &[],
            &[
                "replay",
                "--landscape",
                "landscape.csv",
                "--slo-p99-ms",
                "25",
                "--prior",
                "other.csv",
            ],
            &["--landscape landscape.csv", "model features"],
        ),
        case(
            "replay --prior learning from the landscape replayed",
            &[(
                "landscape.csv",
                "a,b,",
                "# servetune-landscape model=m latency_ms=3 worker_mb=100 frontend_mb=200\na,b,",
            )],
            &[
                "replay",
                "--landscape",
                "landscape.csv",
                "--slo-p99-ms",
                "25",
                "--prior",
                "landscape.csv",
            ],
            &["--prior landscape.csv", "cannot be one the model learns from"],
        ),
        // predict, and a study started from it.
        case(
            "predict a zero SLO",
            &[],
            &[
                "predict",
                "--target",
                "target.toml",
                "--body",
                "bodies",
                "--slo-p99-ms",
                "0",
            ],
            &["--slo-p99-ms"],
        ),
        case(
            "predict for no users",
            &[],
            &["predict", "--target", "target.toml", "--body", "bodies", "--users", "0"],
            &["--users"],
        ),
        case(
            "predict with a missing body",
            &[],
            &["predict", "--target", "target.toml", "--body", "nope"],
            &["--body nope"],
        ),
        case(
            "tune --prior a file predict did not write",
            &[],
            &[
                "tune",
                "--study",
                "study.toml",
                "--results-dir",
                "results",
                "--prior",
                "study.toml",
            ],
            &["--prior study.toml", "servetune predict --json"],
        ),
    ]
}

#[test]
fn bad_input_is_refused_up_front_and_changes_nothing() {
    let all = cases();
    assert!(all.len() >= 40, "a table of at least 40 cases: {}", all.len());
    let mut failures = Vec::new();
    for case in &all {
        let folder = Folder::new();
        for (file, from, to) in case.edits {
            folder.edit(file, from, to);
        }
        let before = folder.snapshot();
        let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
            .args(case.args)
            .current_dir(folder.dir.path())
            .env("SERVETUNE_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        let mut wrong = Vec::new();
        if output.status.success() {
            wrong.push("exited 0".to_string());
        }
        for expected in case.expected {
            if !stderr.contains(expected) {
                wrong.push(format!("no '{expected}' in the error"));
            }
        }
        if folder.snapshot() != before {
            wrong.push("files changed".into());
        }
        if folder.path("results").exists() || folder.path("run").exists() {
            wrong.push("results written or a server started".into());
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {} — {}", case.what, wrong.join(", "), stderr.trim()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn a_missing_config_is_named_once() {
    let folder = Folder::new();
    std::fs::remove_file(folder.path("config.properties")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_servetune"))
        .args(["server", "status", "--target", "target.toml"])
        .current_dir(folder.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_eq!(stderr.matches("config.properties").count(), 1, "{stderr}");
}

//! TorchServe's own logging as a tunable: its frontend log level.
//!
//! TorchServe 0.12's built-in log4j2 configuration logs the
//! `org.pytorch.serve` logger at DEBUG to `ts_log.log` and, through the root
//! logger, to the console: a line or more per request, about 1 MB/s at
//! 2–3 k req/s. A level above DEBUG drops those lines. servetune writes a
//! log4j2 configuration with the same appenders and files as TorchServe's,
//! only the level changed, to `.servetune/log4j2-<level>.xml` beside the
//! config file, and names it in the `vmargs` property
//! (`-Dlog4j.configurationFile=file://…`), which the `torchserve` launcher
//! passes to the JVM in managed and production mode alike. The access log
//! always stays at INFO in `access_log.log`: it is the record of every
//! request. Two more changes above DEBUG, since a level alone does not stop
//! them (log4j2 hands an event to every ancestor's appenders whatever their
//! level): access-log lines are no longer copied to the console and
//! `ts_log.log`, and frontend lines go to `ts_log.log` once instead of twice
//! (TorchServe's own file names `ts_log` both on its logger and on the root).
//!
//! At `debug` (TorchServe's default) no file is named. A deployment whose
//! `vmargs` already names a log4j2 configuration of its own is left alone:
//! `level_of` says so with None, and the study does not search the level.

use std::path::{Path, PathBuf};

/// TorchServe's own default level of its frontend logger.
pub const DEFAULT_LEVEL: &str = "debug";

const LOG4J_FLAG: &str = "-Dlog4j.configurationFile=";

/// Where servetune keeps the configuration for `level`.
pub fn config_file(config_dir: &Path, level: &str) -> PathBuf {
    config_dir.join(".servetune").join(format!("log4j2-{level}.xml"))
}

/// The log level a `vmargs` value runs TorchServe at: DEBUG without a
/// log4j2 configuration, the level of one of servetune's, None for a
/// configuration servetune did not write.
pub fn level_of(vmargs: Option<&str>) -> Option<String> {
    let Some(vmargs) = vmargs else {
        return Some(DEFAULT_LEVEL.to_string());
    };
    let Some(file) = vmargs.split_whitespace().find_map(|word| word.strip_prefix(LOG4J_FLAG)) else {
        return Some(DEFAULT_LEVEL.to_string());
    };
    let name = Path::new(file.trim_start_matches("file://")).file_name()?.to_str()?;
    let in_ours = Path::new(file.trim_start_matches("file://"))
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == ".servetune");
    let level = name.strip_prefix("log4j2-")?.strip_suffix(".xml")?;
    (in_ours && crate::config::LOG_LEVELS.contains(&level)).then(|| level.to_string())
}

/// `vmargs` with servetune's log4j2 configuration for `level` in place of
/// any earlier one of servetune's (None: the property is better removed).
pub fn vmargs_with(vmargs: Option<&str>, level: &str, config_dir: &Path) -> Option<String> {
    let mut words: Vec<String> = vmargs
        .unwrap_or("")
        .split_whitespace()
        .filter(|word| !word.starts_with(LOG4J_FLAG))
        .map(str::to_string)
        .collect();
    if level != DEFAULT_LEVEL {
        words.push(format!(
            "{LOG4J_FLAG}file://{}",
            config_file(config_dir, level).display()
        ));
    }
    (!words.is_empty()).then(|| words.join(" "))
}

/// The log4j2 configuration for `level`: TorchServe 0.12's appenders and
/// files, the frontend and console at `level`, the access log at INFO.
pub fn render(level: &str) -> String {
    let level = level.to_ascii_lowercase();
    let rolling = |name: &str, file: &str, location: &str, pattern: &str| {
        format!(
            "    <RollingFile name=\"{name}\" fileName=\"${{env:{location}:-logs}}/{file}.log\"\n\
             \x20                filePattern=\"${{env:{location}:-logs}}/{file}.%d{{dd-MMM}}.log.gz\">\n\
             \x20     <PatternLayout pattern=\"{pattern}\"/>\n\
             \x20     <Policies>\n\
             \x20       <SizeBasedTriggeringPolicy size=\"100 MB\"/>\n\
             \x20       <TimeBasedTriggeringPolicy/>\n\
             \x20     </Policies>\n\
             \x20     <DefaultRolloverStrategy max=\"5\"/>\n\
             \x20   </RollingFile>\n"
        )
    };
    let plain = "%d{ISO8601} - %m%n";
    let detailed = "%d{ISO8601} [%-5p] %t %c - %m%n";
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!-- Written by servetune: TorchServe's log files, frontend log level changed. -->\n\
         <Configuration>\n  <Appenders>\n",
    );
    xml.push_str(&rolling("access_log", "access_log", "LOG_LOCATION", plain));
    xml.push_str(&format!(
        "    <Console name=\"STDOUT\" target=\"SYSTEM_OUT\">\n      <PatternLayout pattern=\"{detailed}\"/>\n    </Console>\n"
    ));
    xml.push_str(&rolling("model_log", "model_log", "LOG_LOCATION", detailed));
    xml.push_str(&rolling("model_metrics", "model_metrics", "METRICS_LOCATION", plain));
    xml.push_str(&rolling("ts_log", "ts_log", "LOG_LOCATION", detailed));
    xml.push_str(&rolling("ts_metrics", "ts_metrics", "METRICS_LOCATION", plain));
    let quiet = level != "debug";
    let own = if quiet { " additivity=\"false\"" } else { "" };
    let frontend_refs = if quiet {
        "<AppenderRef ref=\"ts_log\"/><AppenderRef ref=\"STDOUT\"/>"
    } else {
        "<AppenderRef ref=\"ts_log\"/>"
    };
    xml.push_str(&format!(
        "  </Appenders>\n  <Loggers>\n\
         \x20   <Logger name=\"ACCESS_LOG\" level=\"info\"{own}><AppenderRef ref=\"access_log\"/></Logger>\n\
         \x20   <Logger name=\"io.netty\" level=\"error\"/>\n\
         \x20   <Logger name=\"MODEL_LOG\" level=\"{level}\"><AppenderRef ref=\"model_log\"/></Logger>\n\
         \x20   <Logger name=\"MODEL_METRICS\" level=\"all\"><AppenderRef ref=\"model_metrics\"/></Logger>\n\
         \x20   <Logger name=\"org.apache\" level=\"off\"/>\n\
         \x20   <Logger name=\"org.pytorch.serve\" level=\"{level}\"{own}>{frontend_refs}</Logger>\n\
         \x20   <Logger name=\"TS_METRICS\" level=\"all\"><AppenderRef ref=\"ts_metrics\"/></Logger>\n\
         \x20   <Root level=\"{root}\"><AppenderRef ref=\"STDOUT\"/><AppenderRef ref=\"ts_log\"/></Root>\n\
         \x20 </Loggers>\n</Configuration>\n",
        root = if quiet { level.as_str() } else { "info" }
    ));
    xml
}

/// Writes the configuration for `level` (unless it is TorchServe's default).
pub fn ensure_written(config_dir: &Path, level: &str) -> std::io::Result<()> {
    if level == DEFAULT_LEVEL {
        return Ok(());
    }
    let path = config_file(config_dir, level);
    let text = render(level);
    if std::fs::read_to_string(&path).is_ok_and(|existing| existing == text) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::config::file::write_data_atomically(&path, text.as_bytes()).map_err(|e| std::io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmargs_name_servetunes_file_and_keep_other_words() {
        let dir = Path::new("/etc/ts");
        let with = vmargs_with(Some("-Xmx4g -XX:+UseG1GC"), "info", dir).unwrap();
        assert_eq!(
            with,
            "-Xmx4g -XX:+UseG1GC -Dlog4j.configurationFile=file:///etc/ts/.servetune/log4j2-info.xml"
        );
        assert_eq!(level_of(Some(&with)), Some("info".into()));
        let back = vmargs_with(Some(&with), "debug", dir).unwrap();
        assert_eq!(back, "-Xmx4g -XX:+UseG1GC");
        assert_eq!(level_of(Some(&back)), Some("debug".into()));
        assert_eq!(vmargs_with(None, "debug", dir), None);
        assert_eq!(level_of(None), Some("debug".into()));
        assert_eq!(
            level_of(Some("-Dlog4j.configurationFile=file:///opt/mine/log4j2.xml")),
            None,
            "a configuration of the operator's own"
        );
    }

    #[test]
    fn the_rendered_config_keeps_the_access_log_at_info() {
        let xml = render("warn");
        assert!(xml.contains("name=\"ACCESS_LOG\" level=\"info\" additivity=\"false\""));
        assert!(xml.contains("name=\"org.pytorch.serve\" level=\"warn\""));
        assert!(xml.contains("Root level=\"warn\""));
        assert!(xml.contains("${env:LOG_LOCATION:-logs}/access_log.log"));
        let dir = tempfile::tempdir().unwrap();
        ensure_written(dir.path(), "info").unwrap();
        assert!(config_file(dir.path(), "info").exists());
        ensure_written(dir.path(), "debug").unwrap();
        assert!(!config_file(dir.path(), "debug").exists());
    }
}

//! The container files, checked as far as they can be without a Docker
//! engine (none runs where these tests run): the build context, the build
//! stages, the health check, and the compose file's configuration, which
//! `vroeg config check` must accept with the container's paths mapped onto
//! the repository. The Helm chart is checked by `helm lint` and
//! kubeconform in CI (`.ci/run`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::kafka::root;

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ignored() -> Vec<String> {
    read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect()
}

#[test]
fn the_build_context_and_stages_are_right() {
    let ignore = ignored();
    for must in ["target", ".git", ".cache"] {
        assert!(
            ignore.iter().any(|i| i == must),
            ".dockerignore lacks {must}"
        );
    }
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    // Dependencies are built from the recipe before the sources come in.
    let cook = lines
        .iter()
        .position(|l| l.contains("cargo chef cook"))
        .expect("a cargo-chef cook step");
    let sources = lines
        .iter()
        .rposition(|l| *l == "COPY . .")
        .expect("the sources are copied");
    assert!(
        cook < sources,
        "dependencies must be cooked before COPY . ."
    );
    assert!(lines.iter().any(|l| l.contains("cargo chef prepare")));
    assert!(
        dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/healthz"),
        "a HEALTHCHECK on /healthz"
    );
    // What COPY takes from the context exists and is not ignored.
    for line in &lines {
        let Some(rest) = line.strip_prefix("COPY ") else {
            continue;
        };
        if rest.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = rest.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            if *src == "." {
                continue;
            }
            assert!(
                root().join(src).exists(),
                "COPY {src}: not in the repository"
            );
            assert!(
                !ignore.iter().any(|i| src.trim_end_matches('/') == i),
                "COPY {src}: excluded by .dockerignore"
            );
        }
    }
}

/// Container paths of the compose file and the image, and where they are in
/// the repository.
fn host_path(container: &str, state: &std::path::Path) -> String {
    for (inside, outside) in [
        ("/etc/vroeg/config", root().join("config")),
        ("/etc/vroeg/rules", root().join("rules")),
        ("/var/lib/vroeg", state.to_path_buf()),
    ] {
        if let Some(rest) = container.strip_prefix(inside) {
            return format!("{}{rest}", outside.display());
        }
    }
    container.to_owned()
}

#[test]
fn the_compose_file_binds_to_loopback_mounts_config_and_rules_and_its_config_checks() {
    let compose: Value = serde_saphyr::from_str(&read("docker-compose.yml")).unwrap();
    let services = compose["services"].as_object().unwrap();
    let mut checked = 0;
    for (name, service) in services {
        for port in service["ports"].as_array().into_iter().flatten() {
            let port = port.as_str().unwrap();
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name}: port {port} is published on every interface"
            );
        }
        let Some(command) = service["command"].as_array() else {
            continue;
        };
        if command.first().and_then(Value::as_str) != Some("run") {
            continue;
        }
        // Config, rules and routing are mounted, so that edits reload.
        let volumes: Vec<&str> = service["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for mount in [
            "./config:/etc/vroeg/config:ro",
            "./rules:/etc/vroeg/rules:ro",
        ] {
            assert!(volumes.contains(&mount), "{name}: does not mount {mount}");
        }
        // Its configuration as the container sees it checks.
        let state = tempfile::tempdir().unwrap();
        let config = command
            .iter()
            .skip_while(|a| a.as_str() != Some("--config"))
            .nth(1)
            .and_then(Value::as_str)
            .unwrap();
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in service["environment"].as_object().unwrap() {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            // ${VAR:?message} needs the variable; give one.
            let v = if v.starts_with("${") {
                "a-secret".to_owned()
            } else {
                v
            };
            env.insert(k.clone(), host_path(&v, state.path()));
        }
        let out = Command::new(env!("CARGO_BIN_EXE_vroeg"))
            .args(["config", "check", &host_path(config, state.path())])
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            env.get("VROEG_ENGINE_ROUTING").map(PathBuf::from),
            Some(root().join("config/wijkteams.yaml")),
            "{name}: cases are routed to the teams"
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "two vroeg instances");
}

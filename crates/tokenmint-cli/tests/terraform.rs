//! Tests of the Terraform in `deploy/terraform/`: every `.tf` parses (bc-python-hcl2), checkov passes both modules with every skip justified, the IAM policies name no wildcard principal, action or resource, the trust policy always requires `aud` and `sub`, and the input validation is the runtime's.
//!
//! The Terraform binary is not in the package registries, so nothing here runs `terraform`:
//! the checks read the modules as parsed HCL (the JSON bc-python-hcl2 produces) and checkov scans
//! them statically. Python tools come from `scripts/python-env iac`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const MODULES: [&str; 2] = ["broker-lambda", "github-oidc-caller"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn terraform_dir() -> PathBuf {
    root().join("deploy/terraform")
}

/// The `iac` venv (checkov, bc-python-hcl2), built once by the repository's own script.
fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let out = Command::new(root().join("scripts/python-env"))
            .arg("iac")
            .output()
            .expect("scripts/python-env iac needs bash and python3 (with venv)");
        assert!(
            out.status.success(),
            "scripts/python-env iac failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn tf_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') {
                tf_files(&path, out);
            }
        } else if name.ends_with(".tf") {
            out.push(path);
        }
    }
}

fn all_tf_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    tf_files(&terraform_dir(), &mut files);
    files.sort();
    files
}

/// Parses files with bc-python-hcl2 (the `hcl2` module in the venv, the parser checkov uses);
/// returns each file's JSON, or the parser's error.
fn parse_hcl(files: &[PathBuf]) -> Vec<Result<Value, String>> {
    const SCRIPT: &str = r#"
import json, sys, hcl2
out = []
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            out.append({"ok": hcl2.load(f)})
    except Exception as e:
        out.append({"err": f"{type(e).__name__}: {e}"})
json.dump(out, sys.stdout)
"#;
    let out = Command::new(venv().join("bin/python"))
        .arg("-c")
        .arg(SCRIPT)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bc-python-hcl2 crashed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| match r.get("ok") {
            Some(v) => Ok(v.clone()),
            None => Err(r["err"].as_str().unwrap_or_default().to_owned()),
        })
        .collect()
}

/// The parsed HCL of one module file, e.g. `module("github-oidc-caller", "main.tf")`.
fn module(name: &str, file: &str) -> &'static Value {
    static PARSED: OnceLock<Vec<(PathBuf, Value)>> = OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        let files = all_tf_files();
        let results = parse_hcl(&files);
        files
            .into_iter()
            .zip(results)
            .map(|(path, r)| {
                let v = r.unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
                (path, v)
            })
            .collect()
    });
    let want = terraform_dir().join("modules").join(name).join(file);
    &parsed
        .iter()
        .find(|(p, _)| *p == want)
        .unwrap_or_else(|| panic!("{} is missing", want.display()))
        .1
}

/// bc-python-hcl2 wraps every attribute value in a one-element list.
fn attr<'a>(block: &'a Value, name: &str) -> Option<&'a Value> {
    block.get(name).map(|v| match v {
        Value::Array(a) if a.len() == 1 => &a[0],
        other => other,
    })
}

/// The blocks of one kind and type in a file, by label: `blocks(f, "data", "aws_iam_policy_document")`.
fn blocks<'a>(file: &'a Value, kind: &str, ty: &str) -> Vec<(&'a str, &'a Value)> {
    let mut out = Vec::new();
    for entry in file
        .get(kind)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(by_label) = entry.get(ty).and_then(Value::as_object) {
            for (label, body) in by_label {
                out.push((label.as_str(), body));
            }
        }
    }
    out
}

fn block<'a>(file: &'a Value, kind: &str, ty: &str, label: &str) -> &'a Value {
    blocks(file, kind, ty)
        .into_iter()
        .find(|(l, _)| *l == label)
        .unwrap_or_else(|| panic!("{kind} {ty}.{label} is missing"))
        .1
}

/// A variable block's body.
fn variable<'a>(file: &'a Value, name: &str) -> &'a Value {
    file["variable"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v.get(name))
        .unwrap_or_else(|| panic!("variable {name} is missing"))
}

/// Every validation condition of a variable, as HCL expression text.
fn conditions(file: &Value, name: &str) -> Vec<String> {
    variable(file, name)
        .get("validation")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| attr(v, "condition").unwrap().as_str().unwrap().to_owned())
        .collect()
}

/// The regexes a variable's validation applies, unescaped from HCL string syntax.
fn regexes(file: &Value, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for cond in conditions(file, name) {
        let mut rest = cond.as_str();
        while let Some(i) = rest.find("regex(\"") {
            rest = &rest[i + 7..];
            let mut lit = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => lit.push(chars.next().unwrap()),
                    '"' => break,
                    c => lit.push(c),
                }
            }
            out.push(lit);
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// Every statement of a policy document, including the content of `dynamic "statement"` blocks.
fn statements(doc: &Value) -> Vec<&Value> {
    let mut out: Vec<&Value> = doc
        .get("statement")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    for d in doc
        .get("dynamic")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(s) = d.get("statement") {
            out.extend(s["content"].as_array().unwrap().iter());
        }
    }
    out
}

/// Static `condition` blocks of a statement (not `dynamic`: those may be absent).
fn static_conditions(stmt: &Value) -> Vec<&Value> {
    stmt.get("condition")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect()
}

fn has_wildcard(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

#[test]
fn every_tf_file_parses_with_python_hcl2() {
    let files = all_tf_files();
    for m in MODULES {
        for f in ["main.tf", "variables.tf", "outputs.tf", "versions.tf"] {
            let want = terraform_dir().join("modules").join(m).join(f);
            assert!(files.contains(&want), "{} is missing", want.display());
        }
    }
    assert!(files
        .iter()
        .any(|f| f.to_string_lossy().contains("/examples/")));
    let results = parse_hcl(&files);
    let failures: Vec<String> = files
        .iter()
        .zip(&results)
        .filter_map(|(p, r)| r.as_ref().err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "unparsable .tf files:\n{}",
        failures.join("\n")
    );
    // And the parser really parses: broken HCL is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.tf");
    std::fs::write(&broken, "variable \"x\" {\n  type = string\n").unwrap();
    assert!(
        parse_hcl(&[broken])[0].is_err(),
        "bc-python-hcl2 accepted broken HCL"
    );
}

#[test]
fn checkov_passes_both_modules_and_every_skip_is_justified() {
    // Both modules, and the example that calls them (checkov then sees the modules with the
    // example's inputs).
    let dirs = MODULES
        .iter()
        .map(|m| terraform_dir().join("modules").join(m))
        .chain([terraform_dir().join("examples/complete")]);
    for dir in dirs {
        let m = dir
            .strip_prefix(terraform_dir())
            .unwrap()
            .display()
            .to_string();
        let out = Command::new(venv().join("bin/checkov"))
            .args(["--framework", "terraform", "--output", "json", "--compact"])
            .args(["--skip-download", "--directory"])
            .arg(&dir)
            .env("BC_SKIP_MAPPING", "TRUE")
            .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "checkov on {m} printed no JSON report ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        let summary = &report["summary"];
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} on {}", c["check_id"], c["check_name"], c["resource"]))
            .collect();
        assert!(
            failed.is_empty() && summary["failed"] == 0,
            "checkov failures in {m} (fix them, or justify a skip in place):\n{}",
            failed.join("\n")
        );
        assert_eq!(summary["parsing_errors"], 0, "checkov could not parse {m}");
        assert!(
            summary["passed"].as_u64().unwrap() >= 20,
            "checkov ran too few checks on {m}: {summary}"
        );
        for skip in report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let why = skip["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or_default();
            assert!(
                why.trim().len() >= 20,
                "checkov skip {} on {} in {m} has no real justification: {why:?}",
                skip["check_id"],
                skip["resource"]
            );
        }
        // The same rule on the source: every skip comment names one check and says why.
        let mut files = Vec::new();
        tf_files(&dir, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for line in text.lines().filter(|l| l.contains("checkov:skip")) {
                let (_, after) = line.split_once("checkov:skip=").unwrap();
                let (id, why) = after
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{}: skip without a reason: {line}", f.display()));
                assert!(id.starts_with("CKV"), "{}: {line}", f.display());
                assert!(
                    why.trim().len() >= 20,
                    "{}: reason too thin: {line}",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn policies_name_no_wildcard_principal_action_or_resource() {
    // Lambda names its log streams itself, so the broker's log statement names the streams of
    // its own log group: this one `:*`, under an exact log group, is the only pattern allowed.
    const LOG_STREAMS: &str = "${aws_cloudwatch_log_group.lambda.arn}:*";
    let mut documents = 0;
    for m in MODULES {
        let file = module(m, "main.tf");
        for (label, doc) in blocks(file, "data", "aws_iam_policy_document") {
            documents += 1;
            for stmt in statements(doc) {
                let at = format!("{m}: aws_iam_policy_document.{label}");
                for negated in ["not_actions", "not_resources", "not_principals"] {
                    assert!(stmt.get(negated).is_none(), "{at} uses {negated}");
                }
                let effect = attr(stmt, "effect").and_then(Value::as_str);
                assert_eq!(
                    effect,
                    Some("Allow"),
                    "{at}: statements must say Effect Allow"
                );
                let actions = strings(attr(stmt, "actions").unwrap());
                assert!(!actions.is_empty(), "{at} has no actions");
                for a in &actions {
                    assert!(!has_wildcard(a), "{at}: wildcard action {a:?}");
                    assert!(!a.contains("${"), "{at}: computed action {a:?}");
                }
                for p in stmt
                    .get("principals")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    for id in strings(attr(p, "identifiers").unwrap()) {
                        assert!(!has_wildcard(&id), "{at}: wildcard principal {id:?}");
                    }
                    let ty = attr(p, "type").and_then(Value::as_str).unwrap();
                    assert_ne!(ty, "*", "{at}: wildcard principal type");
                }
                for r in attr(stmt, "resources").map(strings).unwrap_or_default() {
                    assert!(
                        r == LOG_STREAMS || !has_wildcard(&r),
                        "{at}: wildcard resource {r:?}"
                    );
                }
                // A role's permission statement must name resources.
                if stmt.get("principals").is_none() {
                    assert!(stmt.get("resources").is_some(), "{at}: no resources");
                }
            }
        }
        // Every policy attached comes from one of those documents: no inline JSON, no
        // managed policies (AWS's own, e.g. AWSLambdaBasicExecutionRole, use Resource "*").
        for (label, role) in blocks(file, "resource", "aws_iam_role") {
            let p = attr(role, "assume_role_policy").unwrap().as_str().unwrap();
            assert!(
                p.starts_with("${data.aws_iam_policy_document.") && p.ends_with(".json}"),
                "{m}: aws_iam_role.{label} has an assume_role_policy outside a policy document: {p}"
            );
            assert!(
                role.get("managed_policy_arns").is_none(),
                "{m}: managed policies"
            );
            assert!(
                role.get("inline_policy").is_none(),
                "{m}: inline_policy block"
            );
        }
        for (label, pol) in blocks(file, "resource", "aws_iam_role_policy") {
            let p = attr(pol, "policy").unwrap().as_str().unwrap();
            assert!(
                p.starts_with("${data.aws_iam_policy_document.") && p.ends_with(".json}"),
                "{m}: aws_iam_role_policy.{label} has a policy outside a policy document: {p}"
            );
        }
        for ty in [
            "aws_iam_role_policy_attachment",
            "aws_iam_policy_attachment",
            "aws_iam_policy",
            "aws_lambda_permission",
        ] {
            assert!(
                blocks(file, "resource", ty).is_empty(),
                "{m} creates a {ty}"
            );
        }
    }
    assert_eq!(documents, 4, "expected 4 policy documents (2 per module)");
}

#[test]
fn permission_policies_grant_only_what_the_broker_and_caller_need() {
    let broker = module("broker-lambda", "main.tf");
    let doc = block(broker, "data", "aws_iam_policy_document", "permissions");
    let mut granted: Vec<(Vec<String>, Vec<String>)> = statements(doc)
        .into_iter()
        .map(|s| {
            (
                strings(attr(s, "actions").unwrap()),
                strings(attr(s, "resources").unwrap()),
            )
        })
        .collect();
    granted.sort();
    let expect = |a: &[&str], r: &[&str]| {
        (
            a.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            r.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    let mut want = vec![
        expect(&["ssm:GetParameters"], &["${local.parameter_arns}"]),
        expect(&["kms:Decrypt"], &["${statement.value}"]),
        expect(&["kms:Sign"], &["${statement.value}"]),
        expect(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            &["${aws_cloudwatch_log_group.lambda.arn}:*"],
        ),
    ];
    want.sort();
    assert_eq!(granted, want);
    // The parameter ARNs are built from the three literal paths, one ARN per path.
    let locals = attr(&broker["locals"][0], "parameter_arns")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        locals.contains("values(var.ssm_parameter_paths)"),
        "{locals}"
    );
    assert!(locals.contains(":parameter${path}"), "{locals}");

    // The KMS statements use exactly the validated key variables.
    let dynamics = doc["dynamic"].as_array().unwrap();
    let for_each: Vec<String> = dynamics
        .iter()
        .map(|d| {
            attr(&d["statement"], "for_each")
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for key in ["kms_key_arn", "kms_signing_key_arn"] {
        let want = format!("${{var.{key} == None ? [] : ['${{var.{key}}}']}}");
        assert!(for_each.contains(&want), "{want} not in {for_each:?}");
    }

    // The Lambda service, for this account only, assumes the broker's role.
    let assume = block(broker, "data", "aws_iam_policy_document", "assume");
    let s = &statements(assume)[0];
    assert_eq!(strings(attr(s, "actions").unwrap()), ["sts:AssumeRole"]);
    let p = attr(s, "principals").unwrap();
    assert_eq!(
        strings(attr(p, "identifiers").unwrap()),
        ["lambda.amazonaws.com"]
    );
    assert!(static_conditions(s)
        .iter()
        .any(|c| attr(c, "variable").unwrap() == "aws:SourceAccount"));

    // The caller's role may only invoke the given broker functions.
    let caller = module("github-oidc-caller", "main.tf");
    let invoke = block(caller, "data", "aws_iam_policy_document", "invoke");
    let stmts = statements(invoke);
    assert_eq!(stmts.len(), 1);
    assert_eq!(
        strings(attr(stmts[0], "actions").unwrap()),
        ["lambda:InvokeFunction"]
    );
    assert_eq!(
        strings(attr(stmts[0], "resources").unwrap()),
        ["${var.broker_function_arns}"]
    );
}

#[test]
fn trust_policy_always_requires_aud_and_a_literal_sub() {
    let caller = module("github-oidc-caller", "main.tf");
    let trust = block(caller, "data", "aws_iam_policy_document", "trust");
    // One statement, not inside `dynamic` (which could leave it out).
    assert!(
        trust.get("dynamic").is_none(),
        "the trust statement must be static"
    );
    let stmts = statements(trust);
    assert_eq!(stmts.len(), 1, "exactly one trust statement");
    let s = stmts[0];
    assert_eq!(
        strings(attr(s, "actions").unwrap()),
        ["sts:AssumeRoleWithWebIdentity"]
    );
    let p = attr(s, "principals").unwrap();
    assert_eq!(attr(p, "type").unwrap(), "Federated");
    assert_eq!(
        strings(attr(p, "identifiers").unwrap()),
        ["${local.provider_arn}"]
    );

    let find = |key: &str| {
        static_conditions(s)
            .into_iter()
            .find(|c| {
                attr(c, "variable")
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .ends_with(key)
            })
            .unwrap_or_else(|| panic!("the trust policy has no static condition on {key}"))
    };
    let aud = find(":aud");
    assert_eq!(attr(aud, "test").unwrap(), "StringEquals");
    assert_eq!(attr(aud, "variable").unwrap(), "${local.issuer_host}:aud");
    assert_eq!(strings(attr(aud, "values").unwrap()), ["${var.audience}"]);
    let sub = find(":sub");
    // StringEquals, never StringLike: no pattern can widen the subjects.
    assert_eq!(attr(sub, "test").unwrap(), "StringEquals");
    assert_eq!(attr(sub, "variable").unwrap(), "${local.issuer_host}:sub");
    assert_eq!(strings(attr(sub, "values").unwrap()), ["${local.subjects}"]);
    let issuer = attr(&caller["locals"][0], "issuer_host")
        .unwrap()
        .as_str()
        .unwrap();
    assert_eq!(issuer, "token.actions.githubusercontent.com");
    // No negated or set operators that pass on a missing key.
    for c in static_conditions(s) {
        let test = attr(c, "test").unwrap().as_str().unwrap();
        assert!(
            !test.contains("Not") && !test.contains("ForAllValues") && !test.contains("IfExists"),
            "unsafe operator {test}"
        );
    }

    // The subjects are built from the repositories and the refs or environments...
    let subjects = attr(&caller["locals"][0], "subjects")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        subjects.contains("setproduct(var.repositories,var.refs)"),
        "{subjects}"
    );
    assert!(
        subjects.contains("setproduct(var.repositories,var.environments)"),
        "{subjects}"
    );
    assert!(
        subjects.contains("repo:${pair[0]}:ref:${pair[1]}"),
        "{subjects}"
    );
    // ...and the role refuses to exist without any.
    let role = block(caller, "resource", "aws_iam_role", "this");
    let pre = &role["lifecycle"][0]["precondition"][0];
    assert_eq!(
        attr(pre, "condition").unwrap(),
        "${length(local.subjects) > 0}"
    );
    assert!(
        conditions(module("github-oidc-caller", "variables.tf"), "repositories")
            .contains(&"${length(var.repositories) > 0}".to_owned())
    );
    assert_eq!(
        attr(role, "assume_role_policy").unwrap(),
        "${data.aws_iam_policy_document.trust.json}"
    );
    assert_eq!(
        attr(
            variable(
                module("github-oidc-caller", "variables.tf"),
                "max_session_duration"
            ),
            "default"
        )
        .unwrap(),
        3600
    );
}

/// The runtime's rule for a repository owner or name (`tokenmint::config`), against the
/// module's: the same regex, `.`/`..` refused, at most 100 characters.
#[test]
fn validation_regexes_are_the_runtimes() {
    let vars = module("broker-lambda", "variables.tf");
    for name in ["repository_owner", "repository_name"] {
        assert_eq!(regexes(vars, name), ["^[A-Za-z0-9_.-]+$"], "{name}");
        let cond = &conditions(vars, name)[0];
        assert!(
            cond.contains(&format!("!contains(['.', '..'],var.{name})")),
            "{cond}"
        );
        assert!(
            cond.contains(&format!("length(var.{name}) <= 100")),
            "{cond}"
        );
        let re = regex::Regex::new(&regexes(vars, name)[0]).unwrap();
        let module_rule = |s: &str| re.is_match(s) && s != "." && s != ".." && s.len() <= 100;
        let long = "a".repeat(101);
        for sample in [
            "acme", "a.b-c_d", ".", "..", "...", "", "*", "acme*", "a/b", "a b", "é", "-", &long,
            "a\n",
        ] {
            assert_eq!(
                module_rule(sample),
                tokenmint::config::is_valid_repo_segment(sample),
                "{name}: module and runtime disagree on {sample:?}"
            );
        }
    }
    assert_eq!(regexes(vars, "function_name"), ["^[A-Za-z0-9_-]{1,64}$"]);
    // Literal absolute SSM paths: no wildcard, no ARN.
    assert_eq!(
        regexes(vars, "ssm_parameter_paths"),
        [r"^/[A-Za-z0-9_.\-/]+$"]
    );
    assert!(conditions(vars, "ssm_parameter_paths")[0].contains("length(path) <= 2048"));
    let ssm = regex::Regex::new(r"^/[A-Za-z0-9_.\-/]+$").unwrap();
    assert!(ssm.is_match("/github-token-broker/app/private-key-pem"));
    for bad in [
        "/app/*",
        "app/key",
        "arn:aws:ssm:eu-west-1:1:parameter/x",
        "/a?",
    ] {
        assert!(!ssm.is_match(bad), "{bad}");
    }
    // https only (Lambda cannot reach a loopback stand-in).
    let base = regexes(vars, "github_api_base_url");
    assert_eq!(
        base,
        ["^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$"]
    );
    let base = regex::Regex::new(&base[0]).unwrap();
    assert!(base.is_match("https://api.github.com"));
    assert!(base.is_match("https://ghes.example.com/api/v3"));
    for bad in [
        "http://api.github.com",
        "https://u:p@x",
        "https://x/?q",
        "ftp://x",
    ] {
        assert!(!base.is_match(bad), "{bad}");
    }
    // Permissions: a non-empty JSON object of known levels.
    let perms = conditions(vars, "permissions");
    assert!(perms.contains(&"${length(var.permissions) > 0}".to_owned()));
    assert!(perms
        .iter()
        .any(|c| c.contains("['read', 'write', 'admin']")));
    assert_eq!(
        conditions(vars, "log_level"),
        ["${contains(['debug', 'info', 'warn', 'error'],var.log_level)}"]
    );
    // Literal key ARNs: no alias, no wildcard.
    let key_arn = "^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$";
    for name in ["kms_key_arn", "kms_signing_key_arn", "log_kms_key_arn"] {
        assert_eq!(regexes(vars, name), [key_arn], "{name}");
    }
    let key_re = regex::Regex::new(key_arn).unwrap();
    assert!(key_re
        .is_match("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"));
    assert!(!key_re.is_match("arn:aws:kms:eu-west-1:123456789012:key/*"));
    assert!(!key_re.is_match("arn:aws:kms:eu-west-1:123456789012:alias/ssm"));

    // The caller module: literal repositories (no wildcard owner), refs, environments, ARNs.
    let vars = module("github-oidc-caller", "variables.tf");
    let repo = regexes(vars, "repositories");
    assert_eq!(
        repo,
        ["^[A-Za-z0-9_.-]+(@[0-9]+)?/[A-Za-z0-9_.-]+(@[0-9]+)?$"]
    );
    let repo = regex::Regex::new(&repo[0]).unwrap();
    assert!(repo.is_match("acme/widgets") && repo.is_match("acme@123/widgets@456"));
    for bad in [
        "*/widgets",
        "acme/*",
        "acme",
        "acme/widgets:ref:x",
        "acme/wid*",
    ] {
        assert!(!repo.is_match(bad), "{bad}");
    }
    let refs = regex::Regex::new(&regexes(vars, "refs")[0]).unwrap();
    assert!(refs.is_match("refs/heads/main") && !refs.is_match("refs/heads/*"));
    let envs = regex::Regex::new(&regexes(vars, "environments")[0]).unwrap();
    assert!(envs.is_match("production") && !envs.is_match("prod*"));
    let wf = regex::Regex::new(&regexes(vars, "job_workflow_refs")[0]).unwrap();
    assert!(wf.is_match("acme/shared/.github/workflows/release.yml@refs/heads/main"));
    assert!(!wf.is_match("acme/shared/.github/workflows/*@refs/heads/main"));
    let arns = regex::Regex::new(&regexes(vars, "broker_function_arns")[0]).unwrap();
    assert!(arns.is_match("arn:aws:lambda:eu-west-1:123456789012:function:widgets-token-broker"));
    assert!(!arns.is_match("arn:aws:lambda:eu-west-1:123456789012:function:*"));
    assert!(!arns.is_match("arn:aws:lambda:eu-west-1:123456789012:function:widgets-*"));
    let aud = regex::Regex::new(&regexes(vars, "audience")[0]).unwrap();
    assert!(aud.is_match("sts.amazonaws.com") && !aud.is_match("*"));
}

/// The broker's function and environment: the runtime's variable names, provided.al2023,
/// handler bootstrap, both architectures, reserved concurrency.
#[test]
fn broker_function_matches_the_runtime_contract() {
    let broker = module("broker-lambda", "main.tf");
    let f = block(broker, "resource", "aws_lambda_function", "broker");
    assert_eq!(attr(f, "runtime").unwrap(), "provided.al2023");
    assert_eq!(attr(f, "handler").unwrap(), "bootstrap");
    assert_eq!(
        strings(attr(f, "architectures").unwrap()),
        ["${var.architecture}"]
    );
    assert_eq!(
        attr(f, "reserved_concurrent_executions").unwrap(),
        "${var.reserved_concurrent_executions}"
    );
    let vars = module("broker-lambda", "variables.tf");
    assert_eq!(
        conditions(vars, "architecture"),
        ["${contains(['arm64', 'x86_64'],var.architecture)}"]
    );
    let env = attr(&broker["locals"][0], "environment")
        .unwrap()
        .as_str()
        .unwrap();
    for (var, value) in [
        (
            "GITHUB_TOKEN_BROKER_REPOSITORY_OWNER",
            "var.repository_owner",
        ),
        ("GITHUB_TOKEN_BROKER_REPOSITORY_NAME", "var.repository_name"),
        (
            "GITHUB_TOKEN_BROKER_PERMISSIONS",
            "jsonencode(var.permissions)",
        ),
        (
            "GITHUB_TOKEN_BROKER_CLIENT_ID_PARAM",
            "var.ssm_parameter_paths.client_id",
        ),
        (
            "GITHUB_TOKEN_BROKER_INSTALLATION_ID_PARAM",
            "var.ssm_parameter_paths.installation_id",
        ),
        (
            "GITHUB_TOKEN_BROKER_PRIVATE_KEY_PARAM",
            "var.ssm_parameter_paths.private_key",
        ),
        (
            "GITHUB_TOKEN_BROKER_GITHUB_API_BASE_URL",
            "var.github_api_base_url",
        ),
        ("GITHUB_TOKEN_BROKER_LOG_LEVEL", "var.log_level"),
    ] {
        assert!(
            env.contains(&format!("'{var}': '${{{value}}}'")),
            "{var} = {value} missing in {env}"
        );
    }
    // A KMS signing key reaches the runtime under the name it reads (and the role may
    // kms:Sign with exactly that key, checked by the permission-policy test).
    assert_eq!(
        tokenmint::lambda::config::KMS_KEY_VAR,
        "TOKENMINT_GITHUB_APP_KMS_KEY_ID"
    );
    assert!(
        env.contains("'TOKENMINT_GITHUB_APP_KMS_KEY_ID': '${var.kms_signing_key_arn}'"),
        "the KMS signing key is not passed to the runtime: {env}"
    );
    for http in [
        "'TOKENMINT_MODE': 'http'",
        "'TOKENMINT_CONFIG': '${coalesce(var.tokenmint_config",
        "'TOKENMINT_LOG_LEVEL': '${var.log_level}'",
    ] {
        assert!(env.contains(http), "{http} missing in {env}");
    }
    let defaults = attr(variable(vars, "ssm_parameter_paths"), "default").unwrap();
    assert_eq!(defaults["client_id"], "/github-token-broker/app/client-id");
    assert_eq!(
        defaults["installation_id"],
        "/github-token-broker/app/installation-id"
    );
    assert_eq!(
        defaults["private_key"],
        "/github-token-broker/app/private-key-pem"
    );
    let perms = attr(variable(vars, "permissions"), "default").unwrap();
    assert_eq!(perms, &serde_json::json!({"contents": "read"}));

    // Drop-in: github-token-broker's resource addresses, inputs and outputs, so swapping the
    // module source plans in-place updates (no destroy and re-create of the function or role).
    for (ty, label) in [
        ("aws_lambda_function", "broker"),
        ("aws_lambda_function_url", "broker"),
        ("aws_iam_role", "lambda"),
        ("aws_iam_role_policy", "lambda"),
        ("aws_cloudwatch_log_group", "lambda"),
    ] {
        block(broker, "resource", ty, label);
    }
    for input in [
        "function_name",
        "repository_owner",
        "repository_name",
        "lambda_artifact",
        "release_repository",
        "permissions",
        "ssm_parameter_paths",
        "github_api_base_url",
        "log_level",
        "architecture",
        "memory_size",
        "timeout",
        "log_retention_days",
        "tags",
        "enable_function_url",
        "kms_key_arn",
    ] {
        variable(vars, input);
    }
    let outputs = module("broker-lambda", "outputs.tf")["output"]
        .as_array()
        .unwrap();
    for name in [
        "function_arn",
        "function_name",
        "function_invoke_arn",
        "function_url",
        "role_arn",
        "role_name",
        "log_group_name",
        "deployed_version",
    ] {
        assert!(
            outputs.iter().any(|o| o.get(name).is_some()),
            "output {name} is missing"
        );
    }
}

#[test]
fn example_workflow_is_keyless_and_masks_the_token() {
    let wf =
        std::fs::read_to_string(terraform_dir().join("examples/github-actions/mint-token.yml"))
            .unwrap();
    for needle in [
        "id-token: write",
        "contents: read",
        "aws-actions/configure-aws-credentials@",
        "role-to-assume:",
        "aws lambda invoke",
        "--payload 'null'",
        "echo \"::add-mask::$token\"",
    ] {
        assert!(wf.contains(needle), "the example workflow lacks {needle:?}");
    }
    // Parsed, the workflow asks for exactly an OIDC token and read access, and the steps
    // assume the role before invoking.
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(terraform_dir().join("examples/github-actions/mint-token.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        parsed["permissions"],
        serde_json::json!({"id-token": "write", "contents": "read"})
    );
    let steps = parsed["jobs"].as_object().unwrap().values().next().unwrap()["steps"]
        .as_array()
        .unwrap();
    let configure = steps[0]["uses"].as_str().unwrap();
    assert!(configure.starts_with("aws-actions/configure-aws-credentials@"));
    assert!(steps[0]["with"]["role-to-assume"].is_string());
    assert!(steps[1]["run"]
        .as_str()
        .unwrap()
        .contains("aws lambda invoke"));
    // The mask comes before anything else can print the token.
    let mask = wf.find("::add-mask::").unwrap();
    let first_use = wf.find("$token").unwrap();
    assert!(mask < first_use || wf[..first_use].ends_with("::add-mask::"));
    assert!(
        !wf.contains("aws-access-key-id") && !wf.contains("AWS_SECRET_ACCESS_KEY"),
        "the example must stay keyless"
    );
}

//! Docs are generated, not written: `docs/` (index, resources, data sources,
//! ephemeral resources) and the modules' README input/output tables must be
//! exactly what `make docs` (`tools/gendocs.py`) produces from the real
//! provider's schema, `examples/` and `docs-src/`. And every example the docs
//! show is formatted and passes `terraform validate` against the real
//! provider.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use acceptance::{bin_dir, terraform_path, workspace_root};
use anyhow::{bail, Context, Result};

/// The directories of `docs/` that the generator owns (plus `index.md`).
const GENERATED: &[&str] = &["resources", "data-sources", "ephemeral-resources"];
/// Example directories, one per type (plus `examples/provider`).
const EXAMPLE_KINDS: &[&str] = &["resources", "data-sources", "ephemeral-resources"];

/// `.md` files directly in `dir`, by name.
fn md_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if dir.is_dir() {
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") {
                out.push(name);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A unified diff of two files (`diff -u`), or a note when they differ.
fn diff(committed: &Path, generated: &Path) -> String {
    match Command::new("diff")
        .arg("-u")
        .arg(committed)
        .arg(generated)
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(_) => format!("{} differs", committed.display()),
    }
}

#[test]
fn docs_and_module_readmes_are_up_to_date() -> Result<()> {
    let root = workspace_root();
    let tmp = tempfile::Builder::new()
        .prefix("fleetform-docs-")
        .tempdir()?;
    let out = Command::new("python3")
        .arg(root.join("tools/gendocs.py"))
        .arg("--root")
        .arg(&root)
        .arg("--terraform")
        .arg(terraform_path())
        .arg("--plugin-dir")
        .arg(bin_dir())
        .arg("--docs-out")
        .arg(tmp.path().join("docs"))
        .arg("--modules-out")
        .arg(tmp.path().join("modules"))
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .context("run python3 tools/gendocs.py")?;
    if !out.status.success() {
        bail!(
            "tools/gendocs.py failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let mut pairs: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut problems = Vec::new();
    pairs.push((root.join("docs/index.md"), tmp.path().join("docs/index.md")));
    for d in GENERATED {
        let committed = md_files(&root.join("docs").join(d))?;
        let generated = md_files(&tmp.path().join("docs").join(d))?;
        for f in &committed {
            if !generated.contains(f) {
                problems.push(format!(
                    "docs/{d}/{f} documents nothing the provider has (make docs removes it)"
                ));
            }
        }
        for f in generated {
            pairs.push((
                root.join("docs").join(d).join(&f),
                tmp.path().join("docs").join(d).join(&f),
            ));
        }
    }
    for e in std::fs::read_dir(tmp.path().join("modules"))? {
        let m = e?.file_name();
        pairs.push((
            root.join("modules").join(&m).join("README.md"),
            tmp.path().join("modules").join(&m).join("README.md"),
        ));
    }
    for (committed, generated) in &pairs {
        let want = std::fs::read_to_string(generated)?;
        let rel = committed.strip_prefix(&root).unwrap_or(committed).display();
        match std::fs::read_to_string(committed) {
            Err(_) => problems.push(format!("{rel} is missing")),
            Ok(have) if have != want => {
                problems.push(format!("{rel} is stale:\n{}", diff(committed, generated)))
            }
            Ok(_) => {}
        }
    }
    if !problems.is_empty() {
        bail!(
            "docs are stale; run `make docs` and commit the result.\n\n{}",
            problems.join("\n")
        );
    }
    Ok(())
}

#[test]
fn examples_are_formatted() -> Result<()> {
    let out = Command::new(terraform_path())
        .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
        .arg(workspace_root().join("examples"))
        .env("CHECKPOINT_DISABLE", "1")
        .output()?;
    if !out.status.success() {
        bail!(
            "terraform fmt -check found unformatted examples:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Every `.md` file under `dir`, recursively.
fn md_tree(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            md_tree(&e.path(), out)?;
        } else if e.path().extension().is_some_and(|x| x == "md") {
            out.push(e.path());
        }
    }
    Ok(())
}

/// The HCL snippets of hand-written pages (guides, docs-src prose) are
/// formatted as `terraform fmt` would.
#[test]
fn hcl_snippets_in_docs_are_formatted() -> Result<()> {
    let root = workspace_root();
    let mut pages = Vec::new();
    md_tree(&root.join("docs"), &mut pages)?;
    md_tree(&root.join("docs-src"), &mut pages)?;
    let tmp = tempfile::Builder::new()
        .prefix("fleetform-snippets-")
        .tempdir()?;
    let mut n = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page)?;
        let rel = page
            .strip_prefix(&root)
            .unwrap_or(page)
            .display()
            .to_string();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```terraform\n") {
            let body = &rest[start + "```terraform\n".len()..];
            let Some(end) = body.find("```") else { break };
            n += 1;
            let name = format!("{:03}-{}.tf", n, rel.replace(['/', '.'], "_"));
            std::fs::write(tmp.path().join(name), &body[..end])?;
            rest = &body[end + 3..];
        }
    }
    let out = Command::new(terraform_path())
        .args(["fmt", "-check", "-diff", "-no-color"])
        .arg(tmp.path())
        .env("CHECKPOINT_DISABLE", "1")
        .output()?;
    if !out.status.success() {
        bail!(
            "terraform fmt -check: unformatted HCL in the docs (file names say which page):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Relative links between pages lead to files that exist, and `#nested…`
/// anchors to an `<a id>` on the page.
#[test]
fn links_between_pages_resolve() -> Result<()> {
    let root = workspace_root();
    let mut pages = Vec::new();
    md_tree(&root.join("docs"), &mut pages)?;
    pages.push(root.join("README.md"));
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page)?;
        let rel = page
            .strip_prefix(&root)
            .unwrap_or(page)
            .display()
            .to_string();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            rest = &after[end..];
            if target.contains("://") || target.starts_with("mailto:") || target.contains(' ') {
                continue;
            }
            let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
            let dest = if file.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(file)
            };
            if !dest.exists() {
                broken.push(format!("{rel}: {target} (no such file)"));
                continue;
            }
            if anchor.starts_with("nested") {
                let dest_text = std::fs::read_to_string(&dest)?;
                if !dest_text.contains(&format!("<a id=\"{anchor}\"></a>")) {
                    broken.push(format!("{rel}: {target} (no such anchor)"));
                }
            }
        }
    }
    if !broken.is_empty() {
        bail!("broken links in the docs:\n{}", broken.join("\n"));
    }
    Ok(())
}

/// Every example directory the docs are made from.
fn example_dirs() -> Result<Vec<PathBuf>> {
    let ex = workspace_root().join("examples");
    let mut dirs = vec![ex.join("provider"), ex.join("quickstart")];
    for kind in EXAMPLE_KINDS {
        let mut found = Vec::new();
        for e in std::fs::read_dir(ex.join(kind))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                found.push(e.path());
            }
        }
        found.sort();
        dirs.extend(found);
    }
    Ok(dirs)
}

/// `terraform validate` of a copy of `dir` through the real provider (with
/// `dev_overrides`, no `terraform init`). Snippets without a `terraform`
/// block get the provider requirement the docs leave out.
fn validate(dir: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("fleetform-example-")
        .tempdir()?;
    let mut has_requirement = false;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tf") {
            let text = std::fs::read_to_string(e.path())?;
            has_requirement |= text.contains("required_providers");
            std::fs::write(tmp.path().join(&name), text)?;
        }
    }
    if !has_requirement {
        std::fs::write(
            tmp.path().join("zz_docs_test_versions.tf"),
            "terraform {\n  required_providers {\n    fleet = { source = \"fleetform/fleet\" }\n  }\n}\n",
        )?;
    }
    let rc = tmp.path().join(".terraformrc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  dev_overrides {{\n    \"fleetform/fleet\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
            bin_dir().display()
        ),
    )?;
    let out = Command::new(terraform_path())
        .current_dir(tmp.path())
        .args(["validate", "-no-color"])
        .env("TF_CLI_CONFIG_FILE", &rc)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_LOG")
        .output()?;
    if !out.status.success() {
        bail!(
            "{}:\n{}{}",
            dir.strip_prefix(workspace_root()).unwrap_or(dir).display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn examples_validate() -> Result<()> {
    let dirs = example_dirs()?;
    bin_dir(); // build once, before the threads
               // A few at a time: each is a Terraform process plus a provider process.
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(d) = dirs.get(i) else { break };
                if let Err(e) = validate(d) {
                    failures.lock().unwrap().push(format!("{e:#}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    if !failures.is_empty() {
        bail!(
            "{} of {} examples do not validate:\n\n{}",
            failures.len(),
            dirs.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

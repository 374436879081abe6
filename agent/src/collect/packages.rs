//! Installed software packages: dpkg and rpm on Linux, the uninstall
//! registry keys on Windows. The shim runs the package tool through
//! `crate::exec`; pure parsers turn its output into `Package`s.

use std::time::Duration;

use xunjian_proto::Package;

/// `dpkg-query -W -f` format: the status abbreviation first, so installed
/// packages can be told from removed ones whose config files remain.
pub const DPKG_FORMAT: &str = "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n";
/// `rpm -qa --qf` format.
pub const RPM_FORMAT: &str = "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n";

/// Package databases of thousands of entries take seconds to list on slow
/// disks; a minute means something is stuck (e.g. a held rpm lock).
const TIMEOUT: Duration = Duration::from_secs(60);

/// A parser of one tool's output.
type Parser = fn(&str) -> Vec<Package>;

/// Parses `dpkg-query -W -f "$DPKG_FORMAT"`. Only packages whose status
/// (second letter of the abbreviation) is `i` (installed) are kept: `ii`,
/// and `hi` (held) or `ri` (marked for removal), which are installed too.
/// `rc` (config files only), `iU`, `iF` and other half states are dropped.
pub fn parse_dpkg(text: &str) -> Vec<Package> {
    let mut out: Vec<Package> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let (status, name, version, arch) = (f.next()?, f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || status.as_bytes().get(1) != Some(&b'i') {
                return None;
            }
            package(name, version, arch, "dpkg")
        })
        .collect();
    sort_packages(&mut out);
    out
}

/// Parses `rpm -qa --qf "$RPM_FORMAT"`. The `gpg-pubkey` entries are
/// imported signing keys, not software, and are left out; rpm's `(none)`
/// arch means there is none.
pub fn parse_rpm(text: &str) -> Vec<Package> {
    let mut out: Vec<Package> = text
        .lines()
        .filter_map(|line| {
            let mut f = line.split('\t');
            let (name, version, arch) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || name == "gpg-pubkey" {
                return None;
            }
            let arch = if arch.trim() == "(none)" { "" } else { arch };
            package(name, version, arch, "rpm")
        })
        .collect();
    sort_packages(&mut out);
    out
}

/// Parses the JSON of the uninstall registry keys (`Get-ItemProperty
/// ...\Uninstall\* | Select DisplayName,DisplayVersion,Publisher |
/// ConvertTo-Json`): an array, or one object when there is one entry.
/// Keys without a DisplayName (updates, components) are not listed in
/// "Programs and Features" and are left out; the same program registered
/// in both the 64- and 32-bit hive is listed once. The hive does not say
/// the architecture reliably, so `arch` is empty.
pub fn parse_windows_uninstall(text: &str) -> Vec<Package> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
    else {
        return Vec::new();
    };
    let items = match value {
        serde_json::Value::Array(items) => items,
        v @ serde_json::Value::Object(_) => vec![v],
        _ => Vec::new(),
    };
    let text_of = |v: &serde_json::Value, key: &str| -> String {
        match v.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    let mut out: Vec<Package> = items
        .iter()
        .filter_map(|item| {
            package(
                &text_of(item, "DisplayName"),
                &text_of(item, "DisplayVersion"),
                "",
                "windows-uninstall",
            )
        })
        .collect();
    sort_packages(&mut out);
    out.dedup();
    out
}

fn package(name: &str, version: &str, arch: &str, source: &str) -> Option<Package> {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .to_owned()
    };
    let name = clean(name);
    if name.is_empty() {
        return None;
    }
    Some(Package {
        name,
        version: clean(version),
        arch: clean(arch),
        source: source.to_owned(),
    })
}

/// By name (case-insensitive first, for Windows display names), then
/// version and arch, so reports compare stably.
fn sort_packages(p: &mut [Package]) {
    p.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.arch.cmp(&b.arch))
    });
}

/// The installed packages, sorted by name. `Err` says why they could not
/// be listed (no package manager, the tool failed or was cut off), which is
/// not the same as having no packages.
pub fn collect() -> Result<Vec<Package>, String> {
    #[cfg(windows)]
    {
        collect_windows()
    }
    #[cfg(not(windows))]
    {
        collect_unix()
    }
}

/// Runs one tool and parses its output; every way it can fail is an `Err`.
fn run_tool(program: &str, args: &[&str], parse: Parser) -> Result<Vec<Package>, String> {
    let out = crate::exec::Cmd::new(program, args)
        .timeout(TIMEOUT)
        .run()
        .map_err(|e| e.to_string())?;
    if out.code != Some(0) {
        let why = out.stderr.lines().next().unwrap_or("").trim();
        return Err(format!(
            "{} exited with {}: {why}",
            out.command,
            out.code
                .map_or_else(|| "a signal".to_owned(), |c| c.to_string())
        ));
    }
    if out.truncated {
        return Err(format!(
            "{}: output over the capture limit, list incomplete",
            out.command
        ));
    }
    Ok(parse(&out.stdout))
}

#[cfg(not(windows))]
fn collect_unix() -> Result<Vec<Package>, String> {
    use crate::exec::find_program;
    // Both can be installed (rpm on Debian, dpkg on Fedora); each lists its
    // own database, so the results are merged.
    let mut tools: Vec<(&str, Vec<&str>, Parser)> = Vec::new();
    if find_program("dpkg-query").is_some() {
        tools.push(("dpkg-query", vec!["-W", "-f", DPKG_FORMAT], parse_dpkg));
    }
    if find_program("rpm").is_some() {
        tools.push(("rpm", vec!["-qa", "--qf", RPM_FORMAT], parse_rpm));
    }
    if tools.is_empty() {
        return Err("no supported package manager found (dpkg-query, rpm)".to_owned());
    }
    let mut all = Vec::new();
    let mut errors = Vec::new();
    let mut succeeded = false;
    for (program, args, parse) in tools {
        match run_tool(program, &args, parse) {
            Ok(p) => {
                succeeded = true;
                all.extend(p);
            }
            Err(e) => {
                tracing::warn!(error = %e, "package listing failed");
                errors.push(e);
            }
        }
    }
    if !succeeded {
        return Err(errors.join("; "));
    }
    sort_packages(&mut all);
    Ok(all)
}

#[cfg(windows)]
fn collect_windows() -> Result<Vec<Package>, String> {
    // UTF-8 output, or PowerShell 5 writes the OEM code page to the pipe.
    const SCRIPT: &str = "$ErrorActionPreference='SilentlyContinue';\
[Console]::OutputEncoding=[Text.Encoding]::UTF8;\
@(Get-ItemProperty 'HKLM:\\Software\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*',\
'HKLM:\\Software\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*' |\
Select-Object DisplayName,DisplayVersion,Publisher) | ConvertTo-Json -Compress";
    let root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
    let ps = format!(r"{root}\System32\WindowsPowerShell\v1.0\powershell.exe");
    run_tool(
        &ps,
        &["-NoProfile", "-NonInteractive", "-Command", SCRIPT],
        parse_windows_uninstall,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/packages")
            .join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn find<'a>(p: &'a [Package], name: &str) -> &'a Package {
        p.iter()
            .find(|x| x.name == name)
            .unwrap_or_else(|| panic!("{name} not found"))
    }

    #[test]
    fn dpkg_capture_from_this_machine() {
        let text = fixture("dpkg-query-status-abbrev_debian12.txt");
        let p = parse_dpkg(&text);
        assert_eq!(p.len(), 200);
        assert_eq!(
            find(&p, "dpkg"),
            &Package {
                name: "dpkg".into(),
                version: "1.21.22".into(),
                arch: "amd64".into(),
                source: "dpkg".into(),
            }
        );
        // Epochs are part of the version.
        assert_eq!(find(&p, "bsdutils").version, "1:2.38.1-5+deb12u3");
        assert_eq!(find(&p, "adduser").arch, "all");
        assert!(p.windows(2).all(|w| w[0].name <= w[1].name));
    }

    #[test]
    fn dpkg_keeps_only_installed_states() {
        // Constructed: this machine has only `ii` entries; the other
        // states are shaped as dpkg-query prints them.
        let text = "ii \tbash\t5.2.15-2+b7\tamd64\n\
                    rc \told-kernel\t6.1.0-9\tamd64\n\
                    hi \theld\t1.0\tamd64\n\
                    iU \tunpacked\t1.0\tamd64\n\
                    iF \thalf-configured\t1.0\tamd64\n\
                    un \tnever\t\t\n\
                    iiR\treinst\t2.0\tamd64\n";
        let names: Vec<String> = parse_dpkg(text).into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["bash", "held", "reinst"]);
    }

    #[test]
    fn dpkg_garbage_and_truncation() {
        assert!(parse_dpkg("").is_empty());
        assert!(parse_dpkg("\n\n\t\t\t\n").is_empty());
        assert!(parse_dpkg("ii \tonly-two\n").is_empty());
        assert!(parse_dpkg("ii \ta\tb\tc\td\n").is_empty());
        assert!(parse_dpkg("i").is_empty());
        assert!(parse_dpkg("ii \t\t1.0\tamd64\n").is_empty());
        let text = fixture("dpkg-query-status-abbrev_debian12.txt");
        for cut in [1, 7, text.len() / 2, text.len() - 3] {
            let Some(head) = text.get(..cut) else {
                continue;
            };
            assert!(parse_dpkg(head).len() <= 200);
        }
        let noise: String = (0..5000u32)
            .map(|i| char::from_u32((i.wrapping_mul(2654435761) >> 7) % 0x3000).unwrap_or('x'))
            .collect();
        let _ = parse_dpkg(&noise);
        let _ = parse_rpm(&noise);
        let _ = parse_windows_uninstall(&noise);
    }

    #[test]
    fn rpm_constructed_sample() {
        // Constructed (no rpm system available here), see PROVENANCE.md.
        let p = parse_rpm(&fixture("constructed_rpm-qa-qf.txt"));
        let names: Vec<&str> = p.iter().map(|x| x.name.as_str()).collect();
        assert!(!names.contains(&"gpg-pubkey"));
        assert_eq!(
            find(&p, "openssl-libs"),
            &Package {
                name: "openssl-libs".into(),
                version: "3.0.7-27.el9".into(),
                arch: "x86_64".into(),
                source: "rpm".into(),
            }
        );
        assert_eq!(find(&p, "basesystem").arch, "noarch");
        assert!(
            names
                .windows(2)
                .all(|w| w[0].to_lowercase() <= w[1].to_lowercase())
        );
        assert!(parse_rpm("").is_empty());
        assert!(parse_rpm("name-only\n").is_empty());
    }

    #[test]
    fn windows_uninstall_constructed_sample() {
        // Constructed (no Windows machine available), see PROVENANCE.md.
        let p = parse_windows_uninstall(&fixture(
            "constructed_windows-uninstall_ConvertTo-Json.json",
        ));
        let names: Vec<&str> = p.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "7-Zip 23.01 (x64)",
                "Git",
                "Microsoft Edge",
                "Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.38.33135",
                "Microsoft Visual C++ 2015-2022 Redistributable (x86) - 14.38.33135",
                "Mozilla Firefox (x64 zh-CN)",
                "Notepad++ (64-bit x64)",
            ]
        );
        let git = find(&p, "Git");
        assert_eq!((git.version.as_str(), git.arch.as_str()), ("2.43.0", ""));
        assert_eq!(git.source, "windows-uninstall");
        let one = parse_windows_uninstall(
            r#"{"DisplayName":"Only","DisplayVersion":null,"Publisher":"x"}"#,
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].version, "");
        assert!(parse_windows_uninstall("").is_empty());
        assert!(parse_windows_uninstall("null").is_empty());
        assert!(parse_windows_uninstall("[{\"DisplayName\": \"cut").is_empty());
        assert!(parse_windows_uninstall("[1, [], {}]").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_collection_on_this_machine() {
        if crate::exec::find_program("dpkg-query").is_none() {
            assert!(collect().is_err() || crate::exec::find_program("rpm").is_some());
            return;
        }
        let p = collect().expect("dpkg-query works on this machine");
        eprintln!("live: {} packages", p.len());
        assert!(p.len() > 100, "{}", p.len());
        assert_eq!(find(&p, "dpkg").source, "dpkg");
        assert!(
            p.windows(2)
                .all(|w| w[0].name.to_lowercase() <= w[1].name.to_lowercase())
        );
    }
}

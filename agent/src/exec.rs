//! Runs external tools the safe way: no shell, the program looked up in a
//! fixed system PATH (or given absolutely), `LC_ALL=C` so output parses the
//! same on every locale, a timeout that kills the whole process group, and
//! a cap on captured output. Blocking: call it from a blocking thread.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where tools are looked up; the agent's own PATH is not trusted.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Captured bytes per stream, at most; the rest is read and discarded.
pub const DEFAULT_OUTPUT_CAP: usize = 4 * 1024 * 1024;

/// Why a command produced no result. Each is reported as `unknown` with this
/// text as the reason, never as a healthy value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("{0} is not installed (not found in {SYSTEM_PATH})")]
    NotFound(String),
    #[error("{program} did not finish within {timeout:?} and was killed")]
    TimedOut { program: String, timeout: Duration },
    #[error("cannot run {program}: {reason}")]
    Spawn { program: String, reason: String },
}

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Output beyond the cap was discarded.
    pub truncated: bool,
    /// The command line, for evidence strings.
    pub command: String,
}

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd<'a> {
    pub program: &'a str,
    pub args: Vec<String>,
    pub timeout: Duration,
    pub output_cap: usize,
}

impl<'a> Cmd<'a> {
    pub fn new(program: &'a str, args: &[&str]) -> Self {
        Self {
            program,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            timeout: Duration::from_secs(30),
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn output_cap(mut self, cap: usize) -> Self {
        self.output_cap = cap;
        self
    }

    /// Runs it; see the module docs for the rules.
    pub fn run(&self) -> Result<Output, ExecError> {
        let path = find_program(self.program)
            .ok_or_else(|| ExecError::NotFound(self.program.to_owned()))?;
        let command = std::iter::once(self.program.to_owned())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new(&path);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            // Its own process group, so a timeout kills its children too.
            cmd.process_group(0);
        }
        #[cfg(windows)]
        {
            // PowerShell and WMI need these to start at all.
            for var in [
                "SystemRoot",
                "windir",
                "SystemDrive",
                "ProgramData",
                "TEMP",
                "TMP",
            ] {
                if let Some(v) = std::env::var_os(var) {
                    cmd.env(var, v);
                }
            }
        }
        let spawn_err = |e: std::io::Error| ExecError::Spawn {
            program: self.program.to_owned(),
            reason: e.to_string(),
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let cap = self.output_cap;
        let out = child
            .stdout
            .take()
            .map(|s| std::thread::spawn(move || read_capped(s, cap)));
        let err = child
            .stderr
            .take()
            .map(|s| std::thread::spawn(move || read_capped(s, cap)));
        let start = Instant::now();
        let status = loop {
            match child.try_wait().map_err(spawn_err)? {
                Some(status) => break Some(status),
                None if start.elapsed() >= self.timeout => break None,
                None => std::thread::sleep(
                    Duration::from_millis(5)
                        .max(self.timeout / 1000)
                        .min(Duration::from_millis(50)),
                ),
            }
        };
        let Some(status) = status else {
            kill_group(&mut child);
            let _ = child.wait();
            return Err(ExecError::TimedOut {
                program: self.program.to_owned(),
                timeout: self.timeout,
            });
        };
        // A child the tool left in the background can hold the pipes open
        // after the tool exits; the deadline covers it too.
        let readers_done = || {
            out.as_ref().is_none_or(|h| h.is_finished())
                && err.as_ref().is_none_or(|h| h.is_finished())
        };
        while !readers_done() {
            if start.elapsed() >= self.timeout {
                kill_group(&mut child);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (stdout, t1) = out.and_then(|h| h.join().ok()).unwrap_or_default();
        let (stderr, t2) = err.and_then(|h| h.join().ok()).unwrap_or_default();
        Ok(Output {
            code: status.code(),
            stdout,
            stderr,
            truncated: t1 || t2,
            command,
        })
    }
}

/// The program's path: itself when absolute, else the first match in
/// [`SYSTEM_PATH`].
pub fn find_program(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_owned());
    }
    if program.contains('/') {
        return None;
    }
    SYSTEM_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

fn read_capped(mut stream: impl Read, cap: usize) -> (String, bool) {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (String::from_utf8_lossy(&kept).into_owned(), truncated)
}

fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let _ = child.kill();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_without_a_shell_and_captures_output() {
        let out = Cmd::new("echo", &["a;", "$HOME", "|", "b"]).run().unwrap();
        assert_eq!(out.code, Some(0));
        // No shell: metacharacters are plain arguments.
        assert_eq!(out.stdout, "a; $HOME | b\n");
        assert_eq!(out.command, "echo a; $HOME | b");
    }

    #[test]
    fn missing_tool_is_not_found() {
        assert_eq!(
            Cmd::new("xunjian-no-such-tool", &[]).run().unwrap_err(),
            ExecError::NotFound("xunjian-no-such-tool".into())
        );
        assert!(find_program("../bin/sh").is_none());
    }

    #[test]
    fn nonzero_exit_is_an_output_not_an_error() {
        let out = Cmd::new("false", &[]).run().unwrap();
        assert_eq!(out.code, Some(1));
    }

    #[test]
    fn a_hanging_tool_is_killed_at_the_timeout_with_its_children() {
        let start = Instant::now();
        // sh starts a child sleep; both are in the killed process group.
        let err = Cmd::new("sh", &["-c", "sleep 30 & sleep 30"])
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap_err();
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_background_child_holding_the_pipe_does_not_outlive_the_timeout() {
        let start = Instant::now();
        let out = Cmd::new("sh", &["-c", "sleep 30 & echo OK; exit 0"])
            .timeout(Duration::from_millis(300))
            .run()
            .unwrap();
        assert_eq!(out.code, Some(0));
        assert_eq!(out.stdout, "OK\n");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn output_is_capped() {
        let out = Cmd::new("head", &["-c", "100000", "/dev/zero"])
            .output_cap(1000)
            .run()
            .unwrap();
        assert!(out.truncated);
        assert_eq!(out.stdout.len(), 1000);
    }

    #[test]
    fn locale_is_c() {
        let out = Cmd::new("sh", &["-c", "echo $LC_ALL"]).run().unwrap();
        assert_eq!(out.stdout.trim(), "C");
    }
}

//! A deliberately small command-line parser: `--flag value`, `--flag=value`, switches and
//! positional arguments, with every flag declared up front so a typo is an error rather than
//! silently ignored. The examples need nothing more, and a parser dependency would be most of
//! their build time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// A command line that was not understood, or a request for help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageError {
    /// `-h` or `--help` was given: print the usage and exit successfully.
    Help,
    /// The command line is wrong; the message says how.
    Invalid(String),
}

impl UsageError {
    /// An [`UsageError::Invalid`] with this message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        UsageError::Invalid(msg.into())
    }

    /// Prints help (stdout, exit code 0) or the error and usage (stderr, exit code 2), the
    /// convention for command-line mistakes.
    pub fn report(&self, usage: &str) -> std::process::ExitCode {
        match self {
            UsageError::Help => {
                println!("{usage}");
                std::process::ExitCode::SUCCESS
            }
            UsageError::Invalid(msg) => {
                eprintln!("error: {msg}\n\n{usage}");
                std::process::ExitCode::from(2)
            }
        }
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::Help => f.write_str("help requested"),
            UsageError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for UsageError {}

/// A parsed command line.
#[derive(Debug, Default, Clone)]
pub struct Args {
    values: BTreeMap<&'static str, String>,
    switches: BTreeSet<&'static str>,
    positionals: Vec<String>,
}

impl Args {
    /// Parses `argv` (without the program name). `value_flags` take a value, `switches` do not;
    /// anything else starting with `-` is refused, as is a flag given twice. `--` ends the
    /// flags.
    pub fn parse<I, S>(
        argv: I,
        value_flags: &[&'static str],
        switches: &[&'static str],
    ) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Args::default();
        let mut argv = argv.into_iter().map(Into::into);
        while let Some(arg) = argv.next() {
            if arg == "--" {
                out.positionals.extend(argv.by_ref());
                break;
            }
            if arg == "-h" || arg == "--help" {
                return Err(UsageError::Help);
            }
            if !arg.starts_with('-') || arg == "-" {
                out.positionals.push(arg);
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            if let Some(flag) = value_flags.iter().find(|f| **f == name) {
                let value = match inline {
                    Some(v) => v,
                    None => argv
                        .next()
                        .ok_or_else(|| UsageError::invalid(format!("{flag} needs a value")))?,
                };
                if out.values.insert(flag, value).is_some() {
                    return Err(UsageError::invalid(format!("{flag} given twice")));
                }
            } else if let Some(flag) = switches.iter().find(|f| **f == name) {
                if inline.is_some() {
                    return Err(UsageError::invalid(format!("{flag} takes no value")));
                }
                if !out.switches.insert(flag) {
                    return Err(UsageError::invalid(format!("{flag} given twice")));
                }
            } else {
                return Err(UsageError::invalid(format!("unknown option {name}")));
            }
        }
        Ok(out)
    }

    /// The value of `flag`, if given.
    pub fn value(&self, flag: &str) -> Option<&str> {
        self.values.get(flag).map(String::as_str)
    }

    /// The cluster name given with `--cluster` (default `demo`), checked with the library's
    /// rule so that a bad one is a usage error (exit 2), not a node that fails to start.
    pub fn cluster(&self) -> Result<String, UsageError> {
        let cluster = self.value("--cluster").unwrap_or("demo");
        actix_cluster::validate_cluster_name(cluster)
            .map_err(|e| UsageError::invalid(format!("--cluster: {e}")))?;
        Ok(cluster.to_owned())
    }

    /// The value of `flag`, or an error naming it.
    pub fn required(&self, flag: &str) -> Result<&str, UsageError> {
        self.value(flag)
            .ok_or_else(|| UsageError::invalid(format!("{flag} is required")))
    }

    /// The value of `flag` parsed as a `T`, if given.
    pub fn parsed<T>(&self, flag: &str) -> Result<Option<T>, UsageError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.value(flag)
            .map(|v| {
                v.parse()
                    .map_err(|e| UsageError::invalid(format!("{flag} {v:?}: {e}")))
            })
            .transpose()
    }

    /// The value of `flag` as one of `choices` (`(word, value)` pairs), or `default` when the
    /// flag is absent. Any other word is an error that lists the accepted ones.
    pub fn choice<T: Copy>(
        &self,
        flag: &str,
        choices: &[(&str, T)],
        default: T,
    ) -> Result<T, UsageError> {
        let Some(given) = self.value(flag) else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|(word, _)| *word == given)
            .map(|&(_, value)| value)
            .ok_or_else(|| {
                let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
                UsageError::invalid(format!(
                    "{flag} {given:?}: expected one of {}",
                    words.join(", ")
                ))
            })
    }

    /// A comma-separated list (`a,b,c`); empty items are dropped, absent means empty.
    pub fn list(&self, flag: &str) -> Vec<String> {
        self.value(flag)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the switch `flag` was given.
    pub fn switch(&self, flag: &str) -> bool {
        self.switches.contains(flag)
    }

    /// The arguments that are not flags, in order.
    pub fn positionals(&self) -> &[String] {
        &self.positionals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, UsageError> {
        Args::parse(
            argv.iter().copied(),
            &["--name", "--seeds"],
            &["--insecure-plaintext"],
        )
    }

    #[test]
    fn values_switches_and_positionals_are_separated() {
        let a = parse(&[
            "add",
            "--name",
            "n1",
            "--seeds=a:1,b:2",
            "5",
            "--insecure-plaintext",
        ])
        .expect("parses");
        assert_eq!(a.value("--name"), Some("n1"));
        assert_eq!(a.list("--seeds"), ["a:1", "b:2"]);
        assert!(a.switch("--insecure-plaintext"));
        assert_eq!(a.positionals(), ["add", "5"]);
    }

    #[test]
    fn mistakes_are_refused_with_a_reason() {
        for (argv, why) in [
            (&["--nmae", "x"][..], "unknown option --nmae"),
            (&["--name"][..], "--name needs a value"),
            (&["--name", "a", "--name", "b"][..], "--name given twice"),
            (
                &["--insecure-plaintext=yes"][..],
                "--insecure-plaintext takes no value",
            ),
        ] {
            assert_eq!(
                parse(argv).err(),
                Some(UsageError::invalid(why)),
                "{argv:?}"
            );
        }
        assert_eq!(parse(&["x", "--help"]).err(), Some(UsageError::Help));
    }

    #[test]
    fn choices_default_when_absent_and_list_the_accepted_words() {
        let choices = [("a", 1), ("b", 2)];
        assert_eq!(
            parse(&[]).and_then(|a| a.choice("--name", &choices, 0)),
            Ok(0)
        );
        assert_eq!(
            parse(&["--name", "b"]).and_then(|a| a.choice("--name", &choices, 0)),
            Ok(2)
        );
        assert_eq!(
            parse(&["--name", "c"]).and_then(|a| a.choice("--name", &choices, 0)),
            Err(UsageError::invalid("--name \"c\": expected one of a, b"))
        );
    }

    #[test]
    fn double_dash_ends_the_flags() {
        let a = parse(&["--", "--name"]).expect("parses");
        assert_eq!(a.positionals(), ["--name"]);
        assert_eq!(a.value("--name"), None);
    }
}

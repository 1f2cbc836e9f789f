//! `new-sidecar`: writes a starter reducer sidecar project in one language (Python, TypeScript,
//! Go, Java or Rust) into a folder: a gRPC server with `Describe` and one handler per event
//! type of a small library-loans domain (typed SQL statements for a SQLite read model), its
//! unit tests, the stub generation of the language, the gateway's config, schema and sample
//! events, and `run.sh`, which goes from zero to a read model in one command.
//!
//! The templates are the files under `sidecar-starters/` of the repository, embedded in the
//! binary together with `proto/projection.proto`, so the project written depends on nothing
//! of the repository. The projection's name replaces `library-loans` (and `library_loans`)
//! in every file.

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, bail};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Python,
    Typescript,
    Go,
    Java,
    Rust,
}

#[derive(Debug, clap::Args)]
pub struct NewSidecarArgs {
    /// The sidecar's language.
    #[arg(long, value_enum)]
    pub lang: Language,
    /// The folder to write the project into (created if missing; it must be empty unless
    /// --force).
    pub dir: PathBuf,
    /// The projection's name: what `Describe` answers, the connector id in gateway.yaml and the
    /// package's name. Lowercase letters, digits, `-` and `_`, starting with a letter. Default:
    /// the folder's name, made to fit.
    #[arg(long)]
    pub name: Option<String>,
    /// Write into a folder that is not empty: the starter's files replace files of the same
    /// name, other files are left alone.
    #[arg(long)]
    pub force: bool,
}

/// The name the templates carry, replaced by the projection's name.
const TEMPLATE_NAME: &str = "library-loans";
/// The name used when the folder's name cannot be made into one.
const DEFAULT_NAME: &str = "library-loans";

/// The composed `run.sh`: the common script with the language's part in place of this line.
const LANGUAGE_MARKER: &str = "@LANGUAGE@\n";

macro_rules! starter_file {
    ($path:literal => $source:literal) => {
        ($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $source)))
    };
}

/// Files every starter has, whatever its language (run.sh is composed apart).
const COMMON: &[(&str, &str)] = &[
    starter_file!("proto/projection.proto" => "proto/projection.proto"),
    starter_file!("gateway.yaml" => "sidecar-starters/common/gateway.yaml"),
    starter_file!("schema.sql" => "sidecar-starters/common/schema.sql"),
    starter_file!("events.jsonl" => "sidecar-starters/common/events.jsonl"),
];

const RUN_SH: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar-starters/common/run.sh"));

const PYTHON: &[(&str, &str)] = &[
    starter_file!("README.md" => "sidecar-starters/python/README.md"),
    starter_file!(".gitignore" => "sidecar-starters/python/.gitignore"),
    starter_file!("reducer.py" => "sidecar-starters/python/reducer.py"),
    starter_file!("test_reducer.py" => "sidecar-starters/python/test_reducer.py"),
    starter_file!("requirements.txt" => "sidecar-starters/python/requirements.txt"),
    starter_file!("generate.sh" => "sidecar-starters/python/generate.sh"),
];
const PYTHON_RUN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar-starters/python/language.sh"));

const TYPESCRIPT: &[(&str, &str)] = &[
    starter_file!("README.md" => "sidecar-starters/typescript/README.md"),
    starter_file!(".gitignore" => "sidecar-starters/typescript/.gitignore"),
    starter_file!("package.json" => "sidecar-starters/typescript/package.json"),
    starter_file!("package-lock.json" => "sidecar-starters/typescript/package-lock.json"),
    starter_file!("tsconfig.json" => "sidecar-starters/typescript/tsconfig.json"),
    starter_file!("buf.gen.yaml" => "sidecar-starters/typescript/buf.gen.yaml"),
    starter_file!("src/reducer.ts" => "sidecar-starters/typescript/src/reducer.ts"),
    starter_file!("src/main.ts" => "sidecar-starters/typescript/src/main.ts"),
    starter_file!("test/reducer.test.ts" => "sidecar-starters/typescript/test/reducer.test.ts"),
];
const TYPESCRIPT_RUN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar-starters/typescript/language.sh"));

const GO: &[(&str, &str)] = &[
    starter_file!("README.md" => "sidecar-starters/go/README.md"),
    starter_file!(".gitignore" => "sidecar-starters/go/.gitignore"),
    starter_file!("go.mod" => "sidecar-starters/go/go.mod"),
    starter_file!("go.sum" => "sidecar-starters/go/go.sum"),
    starter_file!("main.go" => "sidecar-starters/go/main.go"),
    starter_file!("loans.go" => "sidecar-starters/go/loans.go"),
    starter_file!("loans_test.go" => "sidecar-starters/go/loans_test.go"),
    starter_file!("buf.gen.yaml" => "sidecar-starters/go/buf.gen.yaml"),
    starter_file!("generate.sh" => "sidecar-starters/go/generate.sh"),
    // The stubs as the Go example keeps them, generated from the same proto with the same
    // tools (scripts/go-sidecar.sh); generated-from.txt is derived from its record below.
    starter_file!("projectionpb/projection.pb.go" => "sidecar-examples/go/projectionpb/projection.pb.go"),
    starter_file!("projectionpb/projection_grpc.pb.go" => "sidecar-examples/go/projectionpb/projection_grpc.pb.go"),
];
const GO_RUN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar-starters/go/language.sh"));
const GO_STUBS_RECORD: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar-examples/go/projectionpb/generated-from.txt"));

const JAVA: &[(&str, &str)] = &[
    starter_file!("README.md" => "sidecar-starters/java/README.md"),
    starter_file!(".gitignore" => "sidecar-starters/java/.gitignore"),
    starter_file!("pom.xml" => "sidecar-starters/java/pom.xml"),
    starter_file!("src/main/java/com/example/loans/Reducer.java" => "sidecar-starters/java/src/main/java/com/example/loans/Reducer.java"),
    starter_file!("src/main/java/com/example/loans/Main.java" => "sidecar-starters/java/src/main/java/com/example/loans/Main.java"),
    starter_file!("src/test/java/com/example/loans/ReducerTest.java" => "sidecar-starters/java/src/test/java/com/example/loans/ReducerTest.java"),
];
const JAVA_RUN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar-starters/java/language.sh"));

const RUST: &[(&str, &str)] = &[
    starter_file!("README.md" => "sidecar-starters/rust/README.md"),
    starter_file!(".gitignore" => "sidecar-starters/rust/.gitignore"),
    starter_file!("Cargo.toml" => "sidecar-starters/rust/Cargo.toml"),
    starter_file!("Cargo.lock" => "sidecar-starters/rust/Cargo.lock"),
    starter_file!("build.rs" => "sidecar-starters/rust/build.rs"),
    starter_file!("src/main.rs" => "sidecar-starters/rust/src/main.rs"),
    starter_file!("src/reducer.rs" => "sidecar-starters/rust/src/reducer.rs"),
];
const RUST_RUN: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/sidecar-starters/rust/language.sh"));

impl Language {
    fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Typescript => "typescript",
            Language::Go => "go",
            Language::Java => "java",
            Language::Rust => "rust",
        }
    }

    /// What `run.sh` needs on the machine, for the closing message.
    fn needs(self) -> &'static str {
        match self {
            Language::Python => "python3 (3.9 or newer); the first run installs grpcio and grpcio-tools from PyPI into .venv",
            Language::Typescript => "Node.js 20 or newer with npm; the first run installs the packages of package-lock.json",
            Language::Go => "Go 1.26 or newer; the first build fetches grpc-go and protobuf from the Go module proxy",
            Language::Java => "a JDK 17 or newer and Maven; the first build fetches grpc-java and protoc from Maven Central",
            Language::Rust => "cargo; the first build fetches and compiles tonic, prost and protox (a minute or two)",
        }
    }

    fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Language::Python => PYTHON,
            Language::Typescript => TYPESCRIPT,
            Language::Go => GO,
            Language::Java => JAVA,
            Language::Rust => RUST,
        }
    }

    fn run_part(self) -> &'static str {
        match self {
            Language::Python => PYTHON_RUN,
            Language::Typescript => TYPESCRIPT_RUN,
            Language::Go => GO_RUN,
            Language::Java => JAVA_RUN,
            Language::Rust => RUST_RUN,
        }
    }
}

/// One file of a starter: its path in the project, its text, and whether it is a script.
#[derive(Debug)]
pub struct StarterFile {
    pub path: &'static str,
    pub text: String,
    pub executable: bool,
}

/// The files of the `lang` starter for the projection `name` (already checked).
pub fn starter(lang: Language, name: &str) -> Vec<StarterFile> {
    let personal = |text: &str| text.replace(TEMPLATE_NAME, name).replace(&TEMPLATE_NAME.replace('-', "_"), &name.replace('-', "_"));
    let mut files: Vec<StarterFile> = lang
        .files()
        .iter()
        .chain(COMMON)
        .map(|(path, text)| StarterFile { path, text: personal(text), executable: path.ends_with(".sh") })
        .collect();
    files.push(StarterFile { path: "run.sh", text: personal(&RUN_SH.replace(LANGUAGE_MARKER, lang.run_part())), executable: true });
    if lang == Language::Go {
        files.push(StarterFile { path: "projectionpb/generated-from.txt", text: go_stubs_record(), executable: false });
    }
    files
}

/// The Go stubs' record of what they were generated from, in the starter's words: the proto's
/// hash (run.sh generates the stubs again when it no longer matches) and the tools' versions.
fn go_stubs_record() -> String {
    let mut record = String::from("# What the stubs in this folder were generated from (written by generate.sh).\n");
    for line in GO_STUBS_RECORD.lines().filter(|l| l.starts_with("proto/projection.proto sha256:") || l.starts_with("buf ") || l.starts_with("protoc-gen-")) {
        record.push_str(line);
        record.push('\n');
    }
    record
}

/// Checks a projection name given with --name.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_with_letter || name.len() > 64 || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err(format!(
            "`{name}` cannot be the projection's name: use 1 to 64 lowercase letters, digits, `-` and `_`, starting with a letter"
        ));
    }
    if name.ends_with(['-', '_']) {
        return Err(format!("`{name}` cannot be the projection's name: it must end with a letter or a digit"));
    }
    // Names a Rust package cannot have (cargo refuses them); the other languages accept them,
    // but one rule for all keeps a name valid across languages.
    const RESERVED: &[&str] = &[
        "test", "core", "std", "alloc", "proc_macro", "proc-macro", "self", "super", "crate", "fn", "mod", "struct", "enum", "impl",
        "trait", "type", "use", "let", "match", "loop", "while", "for", "if", "else", "return", "break", "continue", "const", "static",
        "pub", "ref", "mut", "move", "where", "unsafe", "extern", "async", "await", "dyn", "as", "in", "true", "false", "box",
    ];
    if RESERVED.contains(&name) {
        return Err(format!("`{name}` cannot be the projection's name: it is a reserved word in Rust; choose another with --name"));
    }
    Ok(())
}

/// The projection's name made from a folder's name: lowercase, other characters as `-`.
pub fn name_from_dir(dir: &Path) -> String {
    let folder = std::path::absolute(dir).ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default();
    let mut name = String::new();
    for c in folder.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_start_matches(|c: char| !c.is_ascii_lowercase()).trim_end_matches(['-', '_']);
    let name: String = name.chars().take(64).collect();
    let name = name.trim_end_matches(['-', '_']);
    if check_name(name).is_ok() { name.to_string() } else { DEFAULT_NAME.to_string() }
}

pub fn new_sidecar(args: NewSidecarArgs) -> anyhow::Result<ExitCode> {
    let name = match args.name {
        Some(name) => {
            check_name(&name).map_err(anyhow::Error::msg)?;
            name
        }
        None => name_from_dir(&args.dir),
    };
    let dir = &args.dir;
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a folder", dir.display());
        }
        let not_empty = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some();
        if not_empty && !args.force {
            bail!(
                "{} is not empty; choose a new folder, or pass --force to write the starter's files into it (files of the same name are replaced)",
                dir.display()
            );
        }
    }
    let files = starter(args.lang, &name);
    for file in &files {
        write(dir, file)?;
    }

    println!("wrote a {} reducer sidecar for the projection `{name}` into {}:", args.lang.name(), dir.display());
    let mut paths: Vec<&str> = files.iter().map(|f| f.path).collect();
    paths.sort_unstable();
    for path in paths {
        println!("  {path}");
    }
    println!();
    println!("It needs {}.", args.lang.needs());
    println!("From zero to a read model (set-up, sidecar, sample events, gateway, the loans table):");
    println!();
    println!("  cd {} && {}./run.sh", shell_word(&dir.display().to_string()), gateway_prefix());
    println!();
    println!("Then see README.md there: the handlers to change, the tests (./run.sh test), the steps one by one.");
    Ok(ExitCode::SUCCESS)
}

fn write(dir: &Path, file: &StarterFile) -> anyhow::Result<()> {
    let path = dir.join(file.path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(&path, &file.text).with_context(|| format!("writing {}", path.display()))?;
    if file.executable {
        make_executable(&path).with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// `PROJECTOR_GATEWAY=<this binary> ` when `projector-gateway` on PATH is not this binary
/// (run.sh then runs the gateway that wrote the project, whose contract it copied); empty
/// otherwise.
fn gateway_prefix() -> String {
    let Ok(this) = std::env::current_exe().and_then(fs::canonicalize) else { return String::new() };
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("projector-gateway")).find(|candidate| candidate.is_file()))
        .unwrap_or_default()
        .and_then(|found| fs::canonicalize(found).ok());
    if on_path.as_ref() == Some(&this) { String::new() } else { format!("PROJECTOR_GATEWAY={} ", shell_word(&this.display().to_string())) }
}

/// `word` quoted for a POSIX shell when it needs quoting.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Language; 5] = [Language::Python, Language::Typescript, Language::Go, Language::Java, Language::Rust];

    #[test]
    fn every_starter_has_the_contract_the_config_and_a_composed_run_sh() {
        for lang in ALL {
            let files = starter(lang, "library-loans");
            let file = |path: &str| files.iter().find(|f| f.path == path).unwrap_or_else(|| panic!("{lang:?} has no {path}"));
            assert_eq!(file("proto/projection.proto").text, include_str!("../../proto/projection.proto"));
            for path in ["gateway.yaml", "schema.sql", "events.jsonl", "README.md", ".gitignore"] {
                assert!(!file(path).text.is_empty(), "{lang:?} {path}");
            }
            let run = file("run.sh");
            assert!(run.executable && run.text.starts_with("#!/usr/bin/env bash\n"), "{lang:?}");
            assert!(!run.text.contains("@LANGUAGE@"), "{lang:?}: the language's part is missing from run.sh");
            for needed in ["\nsetup() {", "\nunit_tests() {", "\nSIDECAR=("] {
                assert!(run.text.contains(needed), "{lang:?}: run.sh has no {needed:?}");
            }
            let mut paths: Vec<&str> = files.iter().map(|f| f.path).collect();
            paths.sort_unstable();
            paths.dedup();
            assert_eq!(paths.len(), files.len(), "{lang:?}: a path twice");
        }
    }

    /// Every file of sidecar-starters/<language>/ (but language.sh, which goes into run.sh) is
    /// written, so a file added there cannot be forgotten in the lists above.
    #[test]
    fn every_template_file_is_embedded() {
        fn walk(dir: &Path, base: &Path, found: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, found);
                } else {
                    found.push(path.strip_prefix(base).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        for lang in ALL {
            let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("sidecar-starters").join(lang.name());
            let mut on_disk = Vec::new();
            walk(&base, &base, &mut on_disk);
            on_disk.retain(|p| p != "language.sh");
            on_disk.sort();
            let mut embedded: Vec<String> = lang.files().iter().map(|(path, _)| path.to_string()).filter(|p| !p.starts_with("projectionpb/")).collect();
            embedded.sort();
            assert_eq!(on_disk, embedded, "{lang:?}: sidecar-starters/{} and the list of new_sidecar.rs differ", lang.name());
        }
    }

    #[test]
    fn the_projection_s_name_replaces_the_template_s_everywhere() {
        for lang in ALL {
            let files = starter(lang, "shelf-stats");
            for file in &files {
                assert!(!file.text.contains("library-loans") && !file.text.contains("library_loans"), "{lang:?} {}", file.path);
            }
            let config = &files.iter().find(|f| f.path == "gateway.yaml").unwrap().text;
            assert!(config.contains("id: shelf-stats"), "{config}");
        }
        let rust = starter(Language::Rust, "shelf-stats");
        assert!(rust.iter().any(|f| f.path == "Cargo.toml" && f.text.contains("name = \"shelf-stats\"")));
    }

    #[test]
    fn the_go_starter_records_which_proto_its_stubs_come_from() {
        let record = go_stubs_record();
        assert!(record.lines().any(|l| l.starts_with("proto/projection.proto sha256:") && l.len() == "proto/projection.proto sha256:".len() + 64), "{record}");
        assert!(record.contains("\nbuf v") && record.contains("\nprotoc-gen-go v") && record.contains("\nprotoc-gen-go-grpc v"), "{record}");
    }

    #[test]
    fn names_are_checked_and_made_from_the_folder() {
        assert_eq!(check_name("library-loans"), Ok(()));
        assert_eq!(check_name("shelf_stats2"), Ok(()));
        for bad in ["", "Loans", "2loans", "loans-", "my loans", "loans.v2", "test", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(name_from_dir(Path::new("/tmp/My Reducer")), "my-reducer");
        assert_eq!(name_from_dir(Path::new("/tmp/2024_loans.v2/")), "loans-v2");
        assert_eq!(name_from_dir(Path::new("/tmp/py")), "py");
        assert_eq!(name_from_dir(Path::new("/tmp/123")), DEFAULT_NAME);
        assert_eq!(name_from_dir(Path::new("/tmp/test")), DEFAULT_NAME);
    }

    #[test]
    fn a_folder_that_is_not_empty_is_refused_without_force() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let args = |force| NewSidecarArgs { lang: Language::Python, dir: dir.path().to_path_buf(), name: None, force };
        let refused = new_sidecar(args(false)).unwrap_err().to_string();
        assert!(refused.contains("is not empty") && refused.contains("--force"), "{refused}");
        assert!(!dir.path().join("run.sh").exists());
        new_sidecar(args(true)).unwrap();
        assert!(dir.path().join("run.sh").is_file() && dir.path().join("proto/projection.proto").is_file());
        assert_eq!(fs::read_to_string(dir.path().join("notes.txt")).unwrap(), "mine");
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("/usr/local/bin/projector-gateway"), "/usr/local/bin/projector-gateway");
        assert_eq!(shell_word("my dir"), "'my dir'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}

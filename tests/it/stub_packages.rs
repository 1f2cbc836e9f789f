//! The stub packages of the sidecar contract (`stubs/build.sh`): built from `proto/`, then the
//! Python wheel installed into an empty folder and imported, the npm package installed into an
//! empty project and imported, the Maven jar's classes and pom checked, and the Go module
//! fetched from the build's file-based module proxy into an empty Go project that builds and
//! runs against it (its committed stubs checked current with the proto first). Each package's
//! version is the gateway's.
//!
//! The build uses the example sidecars' toolchains and caches (the Python example's venv,
//! npm's cache, the local Maven repository, Go's build cache). Self-contained: no shared
//! support module.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `stubs/build.sh` (all packages) wrote, built once per test binary.
struct Built {
    /// The files (for Go, the module proxy's folder) it printed.
    files: Vec<PathBuf>,
    /// Whether the committed Go stubs matched their inputs before the build, which regenerates
    /// them when they do not: `Err` names what changed since they were generated.
    go_stubs_were_current: Result<(), String>,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let go_stubs_were_current = go_stubs_current();
        let out = Command::new("bash").arg(repo_root().join("stubs/build.sh")).output().expect("run stubs/build.sh");
        assert!(out.status.success(), "stubs/build.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let files = String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect();
        Built { files, go_stubs_were_current }
    })
}

fn packages() -> &'static [PathBuf] {
    &built().files
}

fn package(name: &str) -> &'static Path {
    packages()
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
        .unwrap_or_else(|| panic!("stubs/build.sh wrote no {name}: {:?}", packages()))
}

fn succeeded(what: &str, out: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// The Python example's venv interpreter (it has grpcio and protobuf, which the wheel needs).
fn python() -> String {
    let out = Command::new("bash").arg(repo_root().join("scripts/python-sidecar.sh")).output().unwrap();
    assert!(out.status.success(), "scripts/python-sidecar.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().last().expect("the venv's python").trim().to_string()
}

#[test]
fn the_python_wheel_installs_and_its_modules_import() {
    let wheel = package(&format!("projector_gateway_proto-{VERSION}-py3-none-any.whl"));
    let python = python();
    let site = tempfile::tempdir().unwrap();
    succeeded(
        "pip install the wheel",
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--no-index", "-q", "--target"])
            .arg(site.path())
            .arg(wheel)
            .output()
            .unwrap(),
    );
    let script = r#"
from importlib import metadata
from google.protobuf import any_pb2
from projector_gateway_proto import projection_pb2 as pb, projection_pb2_grpc as pb_grpc
statement = any_pb2.Any()
statement.Pack(pb.Statement(sql="SELECT $1", params=[pb.SqlValue(int64Value=7)]))
assert statement.type_url == "type.googleapis.com/projection.Statement", statement.type_url
assert pb.DESCRIPTOR.services_by_name["Projection"].full_name == "projection.Projection"
assert callable(pb_grpc.add_ProjectionServicer_to_server) and callable(pb_grpc.add_ProjectionInfoServicer_to_server)
requires = metadata.requires("projector-gateway-proto")
assert any(r.startswith("grpcio") for r in requires) and any(r.startswith("protobuf") for r in requires), requires
print("imported", metadata.version("projector-gateway-proto"))
"#;
    let out = Command::new(&python).args(["-c", script]).env("PYTHONPATH", site.path()).output().unwrap();
    let text = succeeded("importing projector_gateway_proto", out);
    assert!(text.contains(&format!("imported {VERSION}")), "{text}");
}

#[test]
fn the_npm_package_installs_and_imports() {
    let tarball = package(&format!("projector-gateway-proto-{VERSION}.tgz"));
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("package.json"), r#"{"name": "consumer", "private": true, "type": "module"}"#).unwrap();
    succeeded(
        "npm install the package",
        Command::new("npm")
            .args(["install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"])
            .arg(tarball)
            .current_dir(project.path())
            .output()
            .unwrap(),
    );
    let script = r#"
import { ProjectionInfoService, ProjectionService, Statement } from "@projector-gateway/proto";
import { Any } from "@projector-gateway/proto/google/protobuf/any";
const bytes = Statement.encode({ sql: "SELECT $1", params: [{ kind: { $case: "int64Value", value: 7n } }] }).finish();
const back = Statement.decode(bytes);
if (back.sql !== "SELECT $1" || back.params[0].kind.value !== 7n) throw new Error("round trip: " + JSON.stringify(back.sql));
if (ProjectionService.project.path !== "/projection.Projection/Project") throw new Error(ProjectionService.project.path);
if (ProjectionInfoService.describe.path !== "/projection.ProjectionInfo/Describe") throw new Error("describe");
if (typeof Any.encode !== "function") throw new Error("Any");
console.log("imported");
"#;
    let out = Command::new("node").args(["--input-type=module", "-e", script]).current_dir(project.path()).output().unwrap();
    let text = succeeded("importing @projector-gateway/proto", out);
    assert!(text.contains("imported"), "{text}");
}

#[test]
fn the_maven_jar_has_the_messages_the_services_and_the_proto() {
    let jar = package(&format!("projector-gateway-proto-{VERSION}.jar"));
    let listing = succeeded("jar tf", Command::new("jar").arg("tf").arg(jar).output().expect("run jar (a JDK)"));
    for class in [
        "io/projectorgateway/projection/ProjectionGrpc.class",
        "io/projectorgateway/projection/ProjectionInfoGrpc.class",
        "io/projectorgateway/projection/Statement.class",
        "io/projectorgateway/projection/SqlValue.class",
        "projection.proto",
    ] {
        assert!(listing.lines().any(|l| l == class), "no {class} in {}:\n{listing}", jar.display());
    }
    let pom = std::fs::read_to_string(package(&format!("projector-gateway-proto-{VERSION}.pom"))).unwrap();
    for coordinate in ["<groupId>io.projectorgateway</groupId>", "<artifactId>projector-gateway-proto</artifactId>", &format!("<version>{VERSION}</version>")] {
        assert!(pom.contains(coordinate), "the pom lacks {coordinate}");
    }
}

/// Whether each `<file> sha256:<digest>` line of `stubs/go/projectionpb/generated-from.txt`
/// still holds, i.e. the committed Go stubs were generated from today's proto and buf.gen.yaml.
fn go_stubs_current() -> Result<(), String> {
    let stamp = repo_root().join("stubs/go/projectionpb/generated-from.txt");
    let stamp = std::fs::read_to_string(&stamp).map_err(|e| format!("{}: {e}", stamp.display()))?;
    let mut checked = 0;
    for (file, digest) in stamp.lines().filter_map(|l| l.split_once(" sha256:")) {
        let out = Command::new("sha256sum").arg(repo_root().join(file)).output().expect("run sha256sum");
        let actual = succeeded(&format!("sha256sum {file}"), out);
        if actual.split_whitespace().next() != Some(digest) {
            return Err(format!("{file} changed since stubs/go/projectionpb was generated"));
        }
        checked += 1;
    }
    if checked == 0 {
        return Err("stubs/go/projectionpb/generated-from.txt names no file".into());
    }
    Ok(())
}

/// `go env NAME`, as the go command of this machine sees it (environment or `go env -w`).
fn go_env(name: &str) -> String {
    let out = Command::new("go").args(["env", name]).output().expect("run go (Go 1.26 or newer)");
    succeeded(&format!("go env {name}"), out).trim().to_string()
}

#[test]
fn the_go_module_installs_from_the_release_module_proxy_and_builds() {
    const MODULE: &str = "github.com/projector-gateway/projector-gateway/stubs/go";
    let proxy = package("goproxy");
    let at = proxy.join(MODULE).join("@v");
    for file in ["list", &format!("v{VERSION}.info"), &format!("v{VERSION}.mod"), &format!("v{VERSION}.zip")] {
        assert!(at.join(file).is_file(), "the module proxy has no {}", at.join(file).display());
    }
    let list = std::fs::read_to_string(at.join("list")).unwrap();
    assert!(list.lines().any(|l| l == format!("v{VERSION}")), "the module proxy's list lacks v{VERSION}:\n{list}");
    if let Err(stale) = &built().go_stubs_were_current {
        panic!("the committed Go stubs were stale: {stale}; stubs/build.sh has regenerated them, commit stubs/go/projectionpb");
    }

    let project = tempfile::tempdir().unwrap();
    let app = project.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("go.mod"), "module consumer\n\ngo 1.26.0\n").unwrap();
    let main = r#"package main

import (
	"fmt"
	"os"

	"github.com/projector-gateway/projector-gateway/stubs/go/projectionpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

type reducer struct {
	projectionpb.UnimplementedProjectionServer
}

func main() {
	server := grpc.NewServer()
	projectionpb.RegisterProjectionServer(server, reducer{})
	statement, err := anypb.New(&projectionpb.Statement{
		Sql:    "SELECT $1",
		Params: []*projectionpb.SqlValue{{Kind: &projectionpb.SqlValue_Int64Value{Int64Value: 7}}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	request := &projectionpb.ProjectionRequest{EventType: "RoomBooked", EventId: "e-1", GlobalPosition: 42}
	bytes, err := proto.Marshal(request)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var back projectionpb.ProjectionRequest
	if err := proto.Unmarshal(bytes, &back); err != nil || !proto.Equal(request, &back) {
		fmt.Fprintln(os.Stderr, "round trip:", err)
		os.Exit(1)
	}
	for name := range server.GetServiceInfo() {
		fmt.Println("service", name)
	}
	fmt.Println("operation", statement.GetTypeUrl())
}
"#;
    std::fs::write(app.join("main.go"), main).unwrap();

    // The release's proxy first, then this machine's way to the Go module proxy for grpc and
    // protobuf. An empty module cache of the test's own: a cache that already holds this
    // version (the version is the gateway's, not bumped with every stub change) would be used
    // instead of the build's zip, and the module is not one to leave in the user's cache.
    let fallback = match go_env("GOPROXY") {
        value if value.is_empty() || value == "off" => "https://proxy.golang.org".to_string(),
        value => value,
    };
    // Module cache files writable, so the temporary folder can be removed.
    let goflags = format!("{} -modcacherw", go_env("GOFLAGS")).trim().to_string();
    let go = |args: &[&str]| {
        let out = Command::new("go")
            .args(args)
            .current_dir(&app)
            .env("GOPROXY", format!("file://{},{fallback}", proxy.display()))
            .env("GONOSUMDB", "github.com/projector-gateway/projector-gateway")
            .env("GOMODCACHE", project.path().join("gomodcache"))
            .env("GOFLAGS", &goflags)
            .env("GOTOOLCHAIN", "local")
            .output()
            .expect("run go (Go 1.26 or newer)");
        succeeded(&format!("go {}", args.join(" ")), out)
    };
    go(&["mod", "tidy"]);
    go(&["build", "-o", "consumer", "."]);

    let sums = std::fs::read_to_string(app.join("go.sum")).unwrap();
    for line in [format!("{MODULE} v{VERSION} h1:"), format!("{MODULE} v{VERSION}/go.mod h1:")] {
        assert!(sums.lines().any(|l| l.starts_with(&line)), "go.sum has no '{line}...':\n{sums}");
    }
    let out = Command::new(app.join("consumer")).output().unwrap();
    let text = succeeded("the Go consumer", out);
    for line in ["service projection.Projection", "operation type.googleapis.com/projection.Statement"] {
        assert!(text.lines().any(|l| l == line), "the Go consumer printed no '{line}':\n{text}");
    }
}

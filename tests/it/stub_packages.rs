//! The stub packages of the sidecar contract (`stubs/build.sh`): built from `proto/`, then the
//! Python wheel installed into an empty folder and imported, the npm package installed into an
//! empty project and imported, and the Maven jar's classes and pom checked. Each package's
//! version is the gateway's.
//!
//! The build uses the example sidecars' toolchains and caches (the Python example's venv,
//! npm's cache, the local Maven repository). Self-contained: no shared support module.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The files `stubs/build.sh` wrote, built once per test binary.
fn packages() -> &'static [PathBuf] {
    static BUILT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("bash").arg(repo_root().join("stubs/build.sh")).output().expect("run stubs/build.sh");
        assert!(out.status.success(), "stubs/build.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect()
    })
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

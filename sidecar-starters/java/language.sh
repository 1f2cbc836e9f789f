# Java: `mvn package` generates the stubs from proto/ (protoc and the grpc-java plugin come from
# Maven Central), compiles, and builds one runnable jar, target/library-loans.jar.
JAR=target/library-loans.jar
SIDECAR=(java -jar "$JAR")

setup() {
  need java "install a JDK 17 or newer"
  need mvn "install Maven 3.6.3 or newer"
  # Built again when the pom, a source or the proto is newer than the jar.
  if ! [ -f "$JAR" ] || [ -n "$(find pom.xml src proto -newer "$JAR" -print -quit)" ]; then
    log "building $JAR (mvn package)"
    mvn -B -q -ntp -Dstyle.color=never package -Dmaven.test.skip=true || die "mvn package failed"
  fi
}

unit_tests() {
  mvn -B -ntp -Dstyle.color=never test
}

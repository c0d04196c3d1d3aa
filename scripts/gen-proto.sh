#!/usr/bin/env bash
# Regenerate src/snapshotter/gen/ from containerd's snapshot protos (Debian 12:
# golang-github-containerd-containerd-dev, golang-github-gogo-protobuf-dev, protobuf-compiler).
# The generated TypeScript is checked in; run this only when the protos change.
set -euo pipefail
cd "$(dirname "$0")/.."
gocode=${GOCODE:-/usr/share/gocode/src}
proto=github.com/containerd/containerd/api/services/snapshots/v1/snapshots.proto
for need in "$gocode/$proto" "$gocode/github.com/gogo/protobuf/gogoproto/gogo.proto"; do
  [ -f "$need" ] || { echo "gen-proto: $need is missing (apt-get install golang-github-containerd-containerd-dev)" >&2; exit 1; }
done
command -v protoc >/dev/null || { echo "gen-proto: protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
out=src/snapshotter/gen
rm -rf "$out"
mkdir -p "$out"
protoc \
  --plugin=protoc-gen-ts_proto=node_modules/.bin/protoc-gen-ts_proto \
  --ts_proto_out="$out" \
  --ts_proto_opt=outputServices=grpc-js,useDate=false,esModuleInterop=true,importSuffix=.ts,env=node,forceLong=number,useExactTypes=false,outputIndex=false,outputJsonMethods=false \
  -I "$gocode" -I "$gocode/github.com/gogo/protobuf" -I /usr/include \
  "$proto"
# gogo.proto only carries Go options; nothing imports its output (or the descriptor it pulls in).
rm -rf "$out/gogoproto" "$out/google/protobuf/descriptor.ts"
echo "gen-proto: wrote $(find "$out" -name '*.ts' | wc -l) files under $out"

#!/usr/bin/env bash
# Assembles tsnet as a Docker managed plugin, offline, from what is on this machine:
#   OUT/rootfs   node, the built project with its production node_modules and native addon,
#                iptables (the same backend as the host's) and busybox, each with its libraries
#   OUT/config.json
# Then: docker plugin create NAME OUT && docker plugin enable NAME, and use NAME as the network
# and IPAM driver (docker network create -d NAME --ipam-driver NAME ...).
# The plugin serves tsbridge + tsipam on one socket (a managed plugin has exactly one), keeps its
# store in the host's /var/lib/tsnet and runs in the host network namespace.
#   usage: scripts/package-docker-plugin.sh [OUT (default build/docker-plugin)]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-build/docker-plugin}"
ROOTFS="$OUT/rootfs"
for f in dist/bin/tsnet.js build/Release/tsnet_native.node; do
  [[ -e $f ]] || { echo "$f is missing: run npm run build first" >&2; exit 1; }
done
rm -rf "$OUT"
mkdir -p "$ROOTFS"/{usr/local/bin,usr/sbin,bin,opt/tsnet/build/Release,etc,tmp,run/docker/plugins,run/tsnet,var/lib/tsnet,proc,sys,dev}
chmod 1777 "$ROOTFS/tmp"

# A file and every shared library it loads, at the same paths inside the rootfs.
copy_with_libs() {
  local src=$1 dest=$2
  install -D -m 0755 "$src" "$ROOTFS$dest"
  { ldd "$src" 2>/dev/null || true; } | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
    [[ -e "$ROOTFS$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$ROOTFS$lib"
  done
}

echo "node: $(node -v)"
copy_with_libs "$(node -p process.execPath)" /usr/local/bin/node

# iptables of the host's flavour (nft or legacy): the multi binary, its names, its extensions.
multi=$(readlink -f "$(command -v iptables)")
copy_with_libs "$multi" "/usr/sbin/$(basename "$multi")"
for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -sf "$(basename "$multi")" "$ROOTFS/usr/sbin/$name"
done
xt=$(dirname "$(find /usr/lib /lib -name 'libxt_tcp.so' 2>/dev/null | head -1)")
if [[ -d $xt ]]; then
  mkdir -p "$ROOTFS$xt"
  for so in "$xt"/*.so; do copy_with_libs "$so" "$so"; done
fi
cp /etc/protocols /etc/services "$ROOTFS/etc/" 2>/dev/null || true

# busybox runs the entrypoint: Docker mounts /proc/sys read-only in plugins, and tsnet sets
# per-interface sysctls (it has CAP_SYS_ADMIN in its own mount namespace to remount it).
copy_with_libs "$(command -v busybox)" /bin/busybox
ln -sf busybox "$ROOTFS/bin/sh"

# The project: built code, native addon, production dependencies only.
cp package.json binding.gyp "$ROOTFS/opt/tsnet/"
cp -r dist "$ROOTFS/opt/tsnet/"
cp build/Release/tsnet_native.node build/Release/tsnet-cni-shim "$ROOTFS/opt/tsnet/build/Release/" 2>/dev/null || cp build/Release/tsnet_native.node "$ROOTFS/opt/tsnet/build/Release/"
mkdir -p "$ROOTFS/opt/tsnet/node_modules"
npm ls --omit=dev --parseable --all 2>/dev/null | grep '/node_modules/' | while read -r dir; do
  rel=${dir#"$PWD/"}
  # Nested packages come with their parent's copy.
  [[ $(grep -o node_modules <<<"$rel" | wc -l) -eq 1 ]] || continue
  mkdir -p "$ROOTFS/opt/tsnet/$(dirname "$rel")"
  cp -r "$dir" "$ROOTFS/opt/tsnet/$rel"
done

cat > "$OUT/config.json" <<'JSON'
{
  "description": "tsnet: the tsbridge network driver and the tsipam IPAM driver",
  "documentation": "https://github.com/tsnet/tsnet#docker-managed-plugin",
  "entrypoint": ["/bin/busybox", "sh", "-c", "busybox mount -o remount,rw /proc/sys 2>/dev/null; exec /usr/local/bin/node /opt/tsnet/dist/bin/tsnet.js serve --managed-plugin tsbridge --plugin-dir /run/docker/plugins --state-dir /var/lib/tsnet --api-socket /run/tsnet/api.sock --cni-socket /run/tsnet/cni.sock --docker-socket /run/docker.sock"],
  "workdir": "/opt/tsnet",
  "interface": {
    "types": ["docker.networkdriver/1.0", "docker.ipamdriver/1.0"],
    "socket": "tsnet.sock"
  },
  "network": { "type": "host" },
  "linux": {
    "capabilities": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE", "CAP_DAC_OVERRIDE"]
  },
  "mounts": [
    { "name": "state", "description": "the store", "source": "/var/lib/tsnet", "destination": "/var/lib/tsnet", "type": "bind", "options": ["rbind", "rw"] },
    { "name": "run", "description": "control and CNI sockets", "source": "/run/tsnet", "destination": "/run/tsnet", "type": "bind", "options": ["rbind", "rw"] }
  ]
}
JSON
echo "assembled $OUT ($(du -sh "$OUT" | cut -f1)): docker plugin create NAME $OUT"

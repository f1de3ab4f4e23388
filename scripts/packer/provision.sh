#!/usr/bin/env bash
# Provision a Debian machine as a kubeadm node: containerd with the systemd cgroup driver,
# swap off for good, br_netfilter and overlay at boot, the bridge and forwarding sysctls,
# and kubeadm, kubelet and kubectl from pkgs.k8s.io pinned to one version and held.
# Safe to run again. Packer runs it as root inside the box; the tests run it in a container.
#
#   K8S_VERSION=1.31.4                 the Kubernetes version (required)
#   PINOTAGE_SKIP_KUBERNETES=1         stop before pkgs.k8s.io (tests: that network is out of reach)
#   PINOTAGE_SKIP_KERNEL=1             write the boot-time files but leave the running kernel alone
#                                      (tests: a container cannot load modules or set sysctls)
set -euo pipefail

k8s_version=${K8S_VERSION:?set K8S_VERSION to the Kubernetes version, e.g. 1.31.4}
case "$k8s_version" in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "provision: K8S_VERSION must look like 1.31.4, got '$k8s_version'" >&2; exit 2 ;;
esac
k8s_minor=${k8s_version%.*}
skip_kubernetes=${PINOTAGE_SKIP_KUBERNETES:-0}
skip_kernel=${PINOTAGE_SKIP_KERNEL:-0}
export DEBIAN_FRONTEND=noninteractive

say() { printf 'provision: %s\n' "$*" >&2; }

disable_swap() {
  say "swap off, and kept off across reboots"
  # Comment out every swap entry so that no reboot turns it back on; kubelet refuses to start with swap.
  if [ -f /etc/fstab ]; then
    sed -i -E 's/^([^#[:space:]][^[:space:]]*[[:space:]]+[^[:space:]]+[[:space:]]+swap[[:space:]].*)$/# \1/' /etc/fstab
  fi
  if [ "$skip_kernel" != 1 ]; then
    swapoff -a
  fi
}

load_modules() {
  say "br_netfilter and overlay at boot"
  install -d -m 0755 /etc/modules-load.d
  printf '%s\n' overlay br_netfilter > /etc/modules-load.d/k8s.conf
  if [ "$skip_kernel" != 1 ]; then
    modprobe overlay
    modprobe br_netfilter
  fi
}

set_sysctls() {
  say "bridge and forwarding sysctls, persisted"
  install -d -m 0755 /etc/sysctl.d
  cat > /etc/sysctl.d/99-kubernetes.conf <<'CONF'
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
net.ipv4.ip_forward = 1
CONF
  if [ "$skip_kernel" != 1 ]; then
    sysctl --system >/dev/null
  fi
}

# VirtualBox puts the NAT adapter first and the host-only one second: with the classic names they
# are eth0 and eth1, which the kubeadm config and flannel's --iface rely on.
classic_interface_names() {
  [ -f /etc/default/grub ] || return 0
  if ! grep -q 'net.ifnames=0' /etc/default/grub; then
    say "classic interface names (eth0, eth1)"
    sed -i -E 's/^GRUB_CMDLINE_LINUX="(.*)"$/GRUB_CMDLINE_LINUX="\1 net.ifnames=0 biosdevname=0"/' /etc/default/grub
    if command -v update-grub >/dev/null; then update-grub; fi
  fi
}

install_containerd() {
  say "containerd with SystemdCgroup"
  apt-get update -q
  apt-get install -y -q --no-install-recommends containerd runc ca-certificates curl gpg \
    iptables iproute2 conntrack socat ethtool
  install -d -m 0755 /etc/containerd
  containerd config default > /etc/containerd/config.toml
  # kubelet uses the systemd cgroup driver (the kubeadm default); containerd's runc must match it.
  sed -i -E 's/^([[:space:]]*)SystemdCgroup = false/\1SystemdCgroup = true/' /etc/containerd/config.toml
  grep -q 'SystemdCgroup = true' /etc/containerd/config.toml
  # The pause image kubeadm $k8s_minor expects; containerd's own default is older and kubeadm warns.
  sed -i -E 's#^([[:space:]]*)sandbox_image = ".*"#\1sandbox_image = "registry.k8s.io/pause:3.10"#' \
    /etc/containerd/config.toml
  if [ "$skip_kernel" != 1 ]; then
    systemctl enable containerd
    systemctl restart containerd
  fi
}

# The fingerprint Kubernetes publishes for the pkgs.k8s.io signing key (kubernetes.io, "Installing
# kubeadm"); the same key signs every minor's repository.
KUBERNETES_KEY_FINGERPRINT=DE15B14486CD377B9E876E1A234654DA9A296436

# Print the fingerprint of the one key in an armored key file ("several keys" when it holds more).
key_fingerprint() {
  gpg --show-keys --with-colons "$1" \
    | awk -F: '$1 == "pub" {keys++} $1 == "fpr" && !fpr {fpr = $10} END {print (keys == 1 ? fpr : "several keys")}'
}

# Install an apt key into /etc/apt/keyrings only when its fingerprint is the expected one.
install_apt_key() {
  local url=$1 fingerprint=$2 keyring=$3 key found
  key=$(mktemp)
  curl -fsSL "$url" -o "$key"
  found=$(key_fingerprint "$key")
  if [ "$found" != "$fingerprint" ]; then
    rm -f "$key"
    echo "provision: $url has key $found, expected $fingerprint" >&2
    exit 1
  fi
  install -d -m 0755 "$(dirname "$keyring")"
  gpg --dearmor --yes -o "$keyring" "$key"
  rm -f "$key"
}

install_kubernetes() {
  say "kubeadm, kubelet, kubectl $k8s_version from pkgs.k8s.io, held"
  local repo="https://pkgs.k8s.io/core:/stable:/v${k8s_minor}/deb/"
  install_apt_key "${repo}Release.key" "$KUBERNETES_KEY_FINGERPRINT" /etc/apt/keyrings/kubernetes-apt-keyring.gpg
  echo "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] ${repo} /" \
    > /etc/apt/sources.list.d/kubernetes.list
  apt-get update -q
  apt-mark unhold kubelet kubeadm kubectl >/dev/null 2>&1 || true
  apt-get install -y -q --allow-change-held-packages \
    "kubelet=${k8s_version}-*" "kubeadm=${k8s_version}-*" "kubectl=${k8s_version}-*" kubernetes-cni
  apt-mark hold kubelet kubeadm kubectl
  if [ "$skip_kernel" != 1 ]; then
    systemctl enable kubelet
  fi
}

disable_swap
load_modules
set_sysctls
classic_interface_names
install_containerd
if [ "$skip_kubernetes" = 1 ]; then
  say "stopping before the Kubernetes packages (PINOTAGE_SKIP_KUBERNETES=1)"
  exit 0
fi
install_kubernetes
apt-get clean
say "done"

#!/usr/bin/env bash
# A throwaway sshd on 127.0.0.1:$SSH_PORT (default 2222) for scripts/bench-dashboard-speed.sh
# VIA=ssh: its own host key and a client key in $DIR (default /tmp/llmtop-sshd), the client key
# authorised for the current user, LLMTOP_* passed through. Installs openssh-server if missing.
# Prints the sshd's PID; stop it with `kill PID`.
set -euo pipefail
DIR=${DIR:-/tmp/llmtop-sshd}
SSH_PORT=${SSH_PORT:-2222}
SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
[ -x /usr/sbin/sshd ] || { $SUDO apt-get update -q && $SUDO apt-get install -y -q openssh-server; } >&2
mkdir -p "$DIR"
[ -f "$DIR/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_ed25519"
[ -f "$DIR/client" ] || ssh-keygen -q -t ed25519 -N '' -f "$DIR/client"
mkdir -p ~/.ssh && chmod 700 ~/.ssh
grep -qF "$(cat "$DIR/client.pub")" ~/.ssh/authorized_keys 2>/dev/null \
  || cat "$DIR/client.pub" >> ~/.ssh/authorized_keys
chmod 600 ~/.ssh/authorized_keys
cat > "$DIR/sshd_config" <<CONF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
AcceptEnv LLMTOP_*
CONF
$SUDO mkdir -p /run/sshd
$SUDO /usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/log"
sleep 0.3
cat "$DIR/sshd.pid"

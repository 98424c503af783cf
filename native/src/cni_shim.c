/*
 * tsnet CNI plugin shim. Installed as the plugin executable (tsbridge, tsipam): it hands the call
 * to the running tsnet daemon over a unix socket (no Node start-up, a millisecond instead of a
 * quarter second), and runs the plugin in Node when the daemon is not there or declines.
 *
 * Request, on the socket: the plugin type, the CNI_* variables, TSNET_STATE_DIR and stdin, each as
 * a 4-byte big-endian length followed by the bytes. Reply: one status byte ('0' success, '1' CNI
 * error, 'F' run standalone) followed by what to print on stdout.
 *
 * The standalone command is read from "tsnet-cni.conf" beside the executable: line 1 the node
 * binary, line 2 the standalone entry, dist/bin/cni-standalone.js (written by `tsnet cni install`).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_STDIN (16 * 1024 * 1024)

static char *read_all(int fd, size_t *len) {
  size_t cap = 65536, n = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_STDIN) break;
      cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb) { free(buf); return NULL; }
      buf = nb;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  *len = n;
  return buf;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int send_field(int fd, const char *p, size_t n) {
  unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
  return write_all(fd, (const char *)len, 4) == 0 && write_all(fd, p, n) == 0 ? 0 : -1;
}

static int send_env(int fd, const char *name) {
  const char *v = getenv(name);
  return send_field(fd, v ? v : "", v ? strlen(v) : 0);
}

/* Runs the plugin in Node with the stdin we already consumed fed back through a pipe. */
static int standalone(const char *self, const char *type, const char *in, size_t in_len) {
  char path[PATH_MAX], dir[PATH_MAX], node[PATH_MAX], entry[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", self);
  snprintf(path, sizeof path, "%s/tsnet-cni.conf", dirname(dir));
  FILE *f = fopen(path, "r");
  if (!f || !fgets(node, sizeof node, f) || !fgets(entry, sizeof entry, f)) {
    printf("{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"tsnet daemon not reachable and %s is missing\"}", path);
    return 1;
  }
  fclose(f);
  node[strcspn(node, "\n")] = 0;
  entry[strcspn(entry, "\n")] = 0;
  int p[2];
  if (pipe(p) != 0) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    write_all(p[1], in, in_len);
    _exit(0);
  }
  close(p[1]);
  dup2(p[0], 0);
  close(p[0]);
  execl(node, node, entry, type, (char *)NULL);
  printf("{\"cniVersion\":\"1.1.0\",\"code\":11,\"msg\":\"cannot run %s: %s\"}", node, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  (void)argc;
  char self[PATH_MAX], base[PATH_MAX];
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl <= 0) snprintf(self, sizeof self, "%s", argv[0]); else self[sl] = 0;
  /* The plugin type is the name it was invoked by (the runtime runs CNI_PATH/<type>). */
  snprintf(base, sizeof base, "%s", argv[0]);
  const char *type = basename(base);
  size_t in_len = 0;
  char *in = read_all(0, &in_len);
  if (!in) return 1;

  const char *sock_path = getenv("TSNET_CNI_SOCKET");
  if (!sock_path || !*sock_path) sock_path = "/run/tsnet/cni.sock";
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) return standalone(self, type, in, in_len);

  const char *state = getenv("TSNET_STATE_DIR");
  if (send_field(fd, type, strlen(type)) || send_env(fd, "CNI_COMMAND") || send_env(fd, "CNI_CONTAINERID") ||
      send_env(fd, "CNI_NETNS") || send_env(fd, "CNI_IFNAME") || send_env(fd, "CNI_ARGS") || send_env(fd, "CNI_PATH") ||
      send_field(fd, state ? state : "/var/lib/tsnet", strlen(state ? state : "/var/lib/tsnet")) || send_field(fd, in, in_len)) {
    close(fd);
    return standalone(self, type, in, in_len);
  }
  shutdown(fd, SHUT_WR);
  size_t out_len = 0;
  char *out = read_all(fd, &out_len);
  close(fd);
  if (!out || out_len == 0 || out[0] == 'F') return standalone(self, type, in, in_len);
  write_all(1, out + 1, out_len - 1);
  return out[0] == '0' ? 0 : 1;
}

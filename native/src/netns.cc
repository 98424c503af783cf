#include "netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>

namespace tsnet {

namespace {
SysError Fail(const char* call) { return SysError{errno, call}; }
}  // namespace

SysError RunInNetns(const std::string& nsPath, const std::function<SysError()>& fn) {
  if (nsPath.empty()) return fn();
  SysError result;
  std::thread worker([&]() {
    int nsfd = open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) { result = Fail("open netns"); return; }
    if (setns(nsfd, CLONE_NEWNET) != 0) { result = Fail("setns"); close(nsfd); return; }
    close(nsfd);
    result = fn();
    // The thread exits here still inside nsPath; that is intended (see netns.h).
  });
  worker.join();
  return result;
}

SysError CreateNetns(const std::string& path) {
  // Create the mount point first so a failure to unshare leaves nothing but an empty file we remove.
  int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return Fail("create netns file");
  close(fd);
  SysError result;
  std::thread worker([&]() {
    if (unshare(CLONE_NEWNET) != 0) { result = Fail("unshare"); return; }
    std::string self = "/proc/self/task/" + std::to_string(syscall(SYS_gettid)) + "/ns/net";
    if (mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) { result = Fail("mount"); return; }
  });
  worker.join();
  if (result.err != 0) unlink(path.c_str());
  return result;
}

SysError DeleteNetns(const std::string& path) {
  if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) return Fail("umount");
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return Fail("unlink");
  return SysError{};
}

}  // namespace tsnet

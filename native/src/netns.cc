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

SysError EnterNetns(const std::string& nsPath) {
  int nsfd = open(nsPath.c_str(), O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) return Fail("open netns");
  SysError r;
  if (setns(nsfd, CLONE_NEWNET) != 0) r = Fail("setns");
  close(nsfd);
  return r;
}

SysError RunInNetns(const std::string& nsPath, const std::function<SysError()>& fn) {
  if (nsPath.empty()) return fn();
  SysError result;
  std::thread worker([&]() {
    result = EnterNetns(nsPath);
    if (result.err == 0) result = fn();
    // The thread exits here still inside nsPath; that is intended (see netns.h).
  });
  worker.join();
  return result;
}

bool IsProcSysPath(const std::string& path) {
  return path.rfind("/proc/sys/", 0) == 0 && path.find("..") == std::string::npos;
}

SysError ProcSysWrite(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return SysError{errno, "open " + path};
  SysError r;
  if (write(fd, value.data(), value.size()) < 0) r = SysError{errno, "write " + path};
  close(fd);
  return r;
}

SysError ProcSysRead(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return SysError{errno, "open " + path};
  SysError r;
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof(buf));
  if (n < 0) r = SysError{errno, "read " + path};
  else out->assign(buf, static_cast<size_t>(n));
  close(fd);
  return r;
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

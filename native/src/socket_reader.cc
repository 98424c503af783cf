#include "socket_reader.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace tsnet {

int SocketReader::Open(int fd) {
  stopFd_ = eventfd(0, EFD_CLOEXEC);
  if (stopFd_ < 0) {
    int err = errno;
    close(fd);
    return err;
  }
  fd_ = fd;
  return 0;
}

void SocketReader::Start(Napi::ThreadSafeFunction tsfn, std::function<void()> loop) {
  tsfn_ = tsfn;
  thread_ = std::thread(std::move(loop));
}

bool SocketReader::WaitReadable() {
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
    int r = poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    return fds[1].revents == 0;
  }
}

void SocketReader::Stop() {
  if (stopped_.exchange(true)) return;
  uint64_t one = 1;
  if (stopFd_ >= 0 && write(stopFd_, &one, sizeof(one)) < 0) { /* the loop also ends when the function is released */ }
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  if (stopFd_ >= 0) close(stopFd_);
  fd_ = stopFd_ = -1;
  if (tsfn_) tsfn_.Release();
}

}  // namespace tsnet

// The server's read operation for plain connections: one recv() performed by Asio's epoll
// reactor that tells the reactor when the socket is drained. Internal to net/http_server.cpp.
#pragma once

#include <sys/socket.h>

#include <boost/asio/error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/version.hpp>
#include <cerrno>
#include <cstddef>

// The drained-read fast path needs Asio's epoll reactor internals as of Boost 1.81 (CMake
// requires exactly that version); anything else, or CAP_NET_NO_DRAINING_READ, uses
// async_read_some.
#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) &&                           \
    !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT) && !defined(BOOST_ASIO_DISABLE_EPOLL) && \
    !defined(CAP_NET_NO_DRAINING_READ)
#define CAP_NET_DRAINING_READ 1

namespace cap::net {

using PlainSocket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;

// A socket that shows its reactor registration to the read operation below.
class ReactorSocket : public PlainSocket {
 public:
  explicit ReactorSocket(PlainSocket&& s) : PlainSocket(std::move(s)) {}
  boost::asio::detail::reactor::per_descriptor_data& reactor_data() {
    return impl_.get_implementation().reactor_data_;
  }
};

// One read, performed by the reactor: a recv() that reports "done and exhausted" when it
// got less than it asked for. Asio's own recv operation reports that only at end of stream,
// so after every request the next read would first try a recv() bound to fail with EAGAIN
// (the client is still waiting for our answer). Exhausted makes the reactor skip that try
// and wait for epoll's next edge, which new data always raises. Embedded in the connection
// and reused, so a read allocates nothing.
class DrainingRead : public boost::asio::detail::reactor_op {
 public:
  using Done = void (*)(void* target, const boost::system::error_code& ec, size_t n);
  DrainingRead(void* target, Done done)
      : reactor_op(boost::system::error_code(), &DrainingRead::perform_read,
                   &DrainingRead::complete_read),
        target_(target),
        done_(done) {}

  void start(boost::asio::detail::reactor& reactor, ReactorSocket& sock, char* buf, size_t len) {
    fd_ = sock.native_handle();
    buf_ = buf;
    len_ = len;
    ec_ = boost::system::error_code();
    bytes_transferred_ = 0;
    reactor.start_op(boost::asio::detail::reactor::read_op, fd_, sock.reactor_data(), this, false,
                     true);
  }

 private:
  static status perform_read(reactor_op* base) {
    auto* o = static_cast<DrainingRead*>(base);
    for (;;) {
      ssize_t n = ::recv(o->fd_, o->buf_, o->len_, MSG_DONTWAIT);
      if (n > 0) {
        o->bytes_transferred_ = size_t(n);
        return size_t(n) < o->len_ ? done_and_exhausted : done;
      }
      if (n == 0) {
        o->ec_ = boost::asio::error::eof;
        return done_and_exhausted;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return not_done;
      o->ec_ = boost::system::error_code(errno, boost::system::system_category());
      return done;
    }
  }
  static void complete_read(void* owner, boost::asio::detail::operation* base,
                            const boost::system::error_code&, std::size_t) {
    if (!owner) return;  // the io_context is being destroyed: nothing to run
    auto* o = static_cast<DrainingRead*>(base);
    o->done_(o->target_, o->ec_, o->bytes_transferred_);
  }

  void* target_;
  Done done_;
  int fd_ = -1;
  char* buf_ = nullptr;
  size_t len_ = 0;
};

}  // namespace cap::net

#endif

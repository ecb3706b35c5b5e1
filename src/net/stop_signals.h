// The stop signals of a server process (cap-agent, cap-console).
#pragma once

#include <signal.h>

namespace cap::net {

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later, so that
/// the caller alone receives them through sigwait() on the returned set; ignores SIGPIPE (a
/// peer that closed is an error code on the socket, not a signal). Call it in main() before
/// starting any thread.
sigset_t block_stop_signals();

}  // namespace cap::net

// libpq, loaded when PostgreSQL is first used (dlopen "libpq.so.5") rather than linked: an
// agent that never speaks to PostgreSQL does not map libpq and what it pulls in (LDAP,
// GnuTLS, Kerberos: about 2 MB resident).
//
// Code that talks to PostgreSQL includes this header instead of <libpq-fe.h> and calls
// PQ... functions as usual: each call goes through the loaded table. It must call
// load_libpq() first, once, and stop with its error when that fails.
#pragma once

#include <libpq-fe.h>

#include <string>

// clang-format off
#define CAP_LIBPQ_FUNCTIONS(X)                                                              \
  X(PQcancel) X(PQclear) X(PQcmdTuples) X(PQconnectPoll) X(PQconnectStartParams)            \
  X(PQconninfoFree) X(PQconninfoParse) X(PQconsumeInput) X(PQerrorMessage) X(PQfinish)      \
  X(PQflush) X(PQfname) X(PQfreeCancel) X(PQfreemem) X(PQftype) X(PQgetCancel)              \
  X(PQgetResult) X(PQgetisnull) X(PQgetlength) X(PQgetvalue) X(PQisBusy) X(PQnfields)       \
  X(PQntuples) X(PQresultErrorField) X(PQresultErrorMessage) X(PQresultStatus)              \
  X(PQsendPrepare) X(PQsendQueryParams) X(PQsendQueryPrepared) X(PQsetnonblocking)          \
  X(PQsocket) X(PQstatus) X(PQtransactionStatus) X(PQunescapeBytea)
// clang-format on

namespace cap::store {

struct LibPq {
#define CAP_LIBPQ_MEMBER(name) decltype(&::name) name = nullptr;
  CAP_LIBPQ_FUNCTIONS(CAP_LIBPQ_MEMBER)
#undef CAP_LIBPQ_MEMBER
};

/// Loads libpq the first time (thread-safe); later calls return at once. False with
/// `error` ("PostgreSQL needs libpq (Debian package libpq5): ...") when it cannot be loaded.
bool load_libpq(std::string* error);
/// The loaded functions. Only after load_libpq() succeeded.
const LibPq& libpq();

}  // namespace cap::store

#define CAP_LIBPQ_CALL(name) ::cap::store::libpq().name
#define PQcancel(...) CAP_LIBPQ_CALL(PQcancel)(__VA_ARGS__)
#define PQclear(...) CAP_LIBPQ_CALL(PQclear)(__VA_ARGS__)
#define PQcmdTuples(...) CAP_LIBPQ_CALL(PQcmdTuples)(__VA_ARGS__)
#define PQconnectPoll(...) CAP_LIBPQ_CALL(PQconnectPoll)(__VA_ARGS__)
#define PQconnectStartParams(...) CAP_LIBPQ_CALL(PQconnectStartParams)(__VA_ARGS__)
#define PQconninfoFree(...) CAP_LIBPQ_CALL(PQconninfoFree)(__VA_ARGS__)
#define PQconninfoParse(...) CAP_LIBPQ_CALL(PQconninfoParse)(__VA_ARGS__)
#define PQconsumeInput(...) CAP_LIBPQ_CALL(PQconsumeInput)(__VA_ARGS__)
#define PQerrorMessage(...) CAP_LIBPQ_CALL(PQerrorMessage)(__VA_ARGS__)
#define PQfinish(...) CAP_LIBPQ_CALL(PQfinish)(__VA_ARGS__)
#define PQflush(...) CAP_LIBPQ_CALL(PQflush)(__VA_ARGS__)
#define PQfname(...) CAP_LIBPQ_CALL(PQfname)(__VA_ARGS__)
#define PQfreeCancel(...) CAP_LIBPQ_CALL(PQfreeCancel)(__VA_ARGS__)
#define PQfreemem(...) CAP_LIBPQ_CALL(PQfreemem)(__VA_ARGS__)
#define PQftype(...) CAP_LIBPQ_CALL(PQftype)(__VA_ARGS__)
#define PQgetCancel(...) CAP_LIBPQ_CALL(PQgetCancel)(__VA_ARGS__)
#define PQgetResult(...) CAP_LIBPQ_CALL(PQgetResult)(__VA_ARGS__)
#define PQgetisnull(...) CAP_LIBPQ_CALL(PQgetisnull)(__VA_ARGS__)
#define PQgetlength(...) CAP_LIBPQ_CALL(PQgetlength)(__VA_ARGS__)
#define PQgetvalue(...) CAP_LIBPQ_CALL(PQgetvalue)(__VA_ARGS__)
#define PQisBusy(...) CAP_LIBPQ_CALL(PQisBusy)(__VA_ARGS__)
#define PQnfields(...) CAP_LIBPQ_CALL(PQnfields)(__VA_ARGS__)
#define PQntuples(...) CAP_LIBPQ_CALL(PQntuples)(__VA_ARGS__)
#define PQresultErrorField(...) CAP_LIBPQ_CALL(PQresultErrorField)(__VA_ARGS__)
#define PQresultErrorMessage(...) CAP_LIBPQ_CALL(PQresultErrorMessage)(__VA_ARGS__)
#define PQresultStatus(...) CAP_LIBPQ_CALL(PQresultStatus)(__VA_ARGS__)
#define PQsendPrepare(...) CAP_LIBPQ_CALL(PQsendPrepare)(__VA_ARGS__)
#define PQsendQueryParams(...) CAP_LIBPQ_CALL(PQsendQueryParams)(__VA_ARGS__)
#define PQsendQueryPrepared(...) CAP_LIBPQ_CALL(PQsendQueryPrepared)(__VA_ARGS__)
#define PQsetnonblocking(...) CAP_LIBPQ_CALL(PQsetnonblocking)(__VA_ARGS__)
#define PQsocket(...) CAP_LIBPQ_CALL(PQsocket)(__VA_ARGS__)
#define PQstatus(...) CAP_LIBPQ_CALL(PQstatus)(__VA_ARGS__)
#define PQtransactionStatus(...) CAP_LIBPQ_CALL(PQtransactionStatus)(__VA_ARGS__)
#define PQunescapeBytea(...) CAP_LIBPQ_CALL(PQunescapeBytea)(__VA_ARGS__)

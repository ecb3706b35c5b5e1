// Boost.URL's compiled part, built into cap_net from its headers (CMake does not link the
// boost_url library). Include <boost/url/src.hpp> nowhere else, or the link sees it twice.
#include <boost/url/src.hpp>

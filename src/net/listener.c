/* SPDX-License-Identifier: ISC */
/* Listening, accepting and connecting sockets; see listener.h. No allocation. */
#include "net/listener.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/un.h>
#include <unistd.h>

static void tune(int fd, int family)
{
	int one = 1;
	if (family != AF_UNIX) {
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	}
}

int lv_listen_socket(const lv_addr_t *addr, bool reuseport, int backlog, lv_err_t *err)
{
	int family = addr->ss.ss_family;
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		lv_err_set(err, LV_EIO, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	if (family != AF_UNIX) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
			lv_err_set(err, LV_EIO, "SO_REUSEPORT: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	} else {
		unlink(((const struct sockaddr_un *)&addr->ss)->sun_path);
	}
	if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
		lv_err_set(err, LV_EIO, "bind: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, backlog) < 0) {
		lv_err_set(err, LV_EIO, "listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int lv_accept(int lfd, lv_addr_t *peer)
{
	peer->len = sizeof(peer->ss);
	int fd = accept4(lfd, (struct sockaddr *)&peer->ss, &peer->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0)
		tune(fd, peer->ss.ss_family);
	return fd;
}

int lv_connect_start(const lv_addr_t *addr, lv_err_t *err)
{
	int family = addr->ss.ss_family;
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		lv_err_set(err, LV_EIO, "socket: %s", strerror(errno));
		return -1;
	}
	tune(fd, family);
	if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 && errno != EINPROGRESS) {
		lv_err_set(err, LV_EIO, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

// Linux constants (generic ABI, plus the x86-64/AArch64 differences where they exist).

// ---- errno ----
export const EINTR = 4;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const ENFILE = 23;
export const EMFILE = 24;
export const ENOBUFS = 105;
export const EINPROGRESS = 115;

// ---- file descriptors ----
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_DUPFD_CLOEXEC = 1030;
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;
export const EFD_CLOEXEC = O_CLOEXEC;
export const EFD_NONBLOCK = O_NONBLOCK;
export const RLIMIT_NOFILE = 7;

// ---- splice(2) ----
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const SPLICE_F_MORE = 4;

// ---- epoll ----
export const EPOLL_CLOEXEC = O_CLOEXEC;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLL_CTL_MOD = 3;
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;
export const EPOLLEXCLUSIVE = 1 << 28;
/** sizeof(struct epoll_event): packed on x86-64 (12 bytes), naturally aligned elsewhere (16). */
export const EPOLL_EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
/** Offset of epoll_event.data. */
export const EPOLL_DATA_OFFSET = process.arch === 'x64' ? 4 : 8;

// ---- sockets ----
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = O_NONBLOCK;
export const SOCK_CLOEXEC = O_CLOEXEC;
export const SHUT_RD = 0;
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;
export const MSG_DONTWAIT = 0x40;
export const MSG_MORE = 0x8000;
export const MSG_PEEK = 2;
export const SOL_SOCKET = 1;
export const SO_TYPE = 3;
export const SO_ERROR = 4;
export const SO_LINGER = 13;
export const SO_REUSEPORT = 15;
export const SO_MARK = 36;
export const SO_PROTOCOL = 38;
export const IPPROTO_TCP = 6;
export const SOL_IP = 0;
export const SOL_IPV6 = 41;
export const SOL_TCP = 6;
export const TCP_NODELAY = 1;
export const IP_TRANSPARENT = 19;
export const IPV6_TRANSPARENT = 75;
/** Also IP6T_SO_ORIGINAL_DST. */
export const SO_ORIGINAL_DST = 80;

// ---- more socket options, UDP original destination, recvmsg flags ----
export const SOCK_DGRAM = 2;
export const SO_REUSEADDR = 2;
export const SO_RCVBUF = 8;
export const IPV6_V6ONLY = 26;
/** IP_RECVORIGDSTADDR (setsockopt) and IP_ORIGDSTADDR (cmsg type) share the number 20. */
export const IP_ORIGDSTADDR = 20;
/** IPV6_RECVORIGDSTADDR / IPV6_ORIGDSTADDR. */
export const IPV6_ORIGDSTADDR = 74;
/** msg_flags bits. */
export const MSG_TRUNC = 0x20;
export const MSG_CTRUNC = 0x08;

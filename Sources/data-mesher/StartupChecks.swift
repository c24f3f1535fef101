#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Checks made before any service starts, so a start-up conflict ends in one line and exit 1
/// with nothing bound (issue 14.4).
enum StartupChecks {
    struct Busy: Error, CustomStringConvertible {
        let description: String
    }

    enum Transport: String {
        case tcp, udp
    }

    /// Binds `host:port` with a plain socket and releases it at once; throws a one-line error
    /// naming what and where when the address is taken or cannot be bound.
    /// TCP is bound with SO_REUSEADDR like the daemon's listeners (so connections in TIME_WAIT
    /// do not count as busy); UDP without it, so any socket already on the port is found.
    static func checkBindable(host: String, port: UInt16, transport: Transport, role: String) throws {
        var hints = addrinfo()
        hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
            hints.ai_socktype = Int32(transport == .tcp ? SOCK_STREAM.rawValue : SOCK_DGRAM.rawValue)
        #else
            hints.ai_socktype = transport == .tcp ? SOCK_STREAM : SOCK_DGRAM
        #endif
        var result: UnsafeMutablePointer<addrinfo>?
        let where_ = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
            throw Busy(description: "\(role) address \(where_) is not an IP address this node can bind")
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            throw Busy(description: "cannot check \(role) address \(where_): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var one: Int32 = 1
        if transport == .tcp {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if info.pointee.ai_family == AF_INET6 {
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let code = errno
            if code == EADDRINUSE {
                throw Busy(
                    description:
                        "\(role) address \(where_) (\(transport.rawValue)) is already in use by another program")
            }
            throw Busy(
                description:
                    "cannot bind \(role) address \(where_) (\(transport.rawValue)): \(String(cString: strerror(code)))")
        }
        if transport == .tcp, listen(fd, 1) != 0 {
            let code = errno
            throw Busy(
                description:
                    "\(role) address \(where_) (\(transport.rawValue)) is already in use by another program (\(String(cString: strerror(code))))"
            )
        }
    }

    /// glibc gives each thread that allocates while another holds the lock an arena of its own
    /// (up to 8 per core) and keeps what is freed in each. The daemon's pool threads pass 1 MiB
    /// buffers of big uploads and fetches around, so that memory is held several times over:
    /// a 512 MiB upload and fetch peaked at 50-71 MB with the default and 40-42 MB with two
    /// arenas, at the same speed (bench/README.md, section 2). An operator's own
    /// `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` wins.
    static func limitMallocArenas() {
        #if canImport(Glibc)
            guard getenv("MALLOC_ARENA_MAX") == nil,
                getenv("GLIBC_TUNABLES").map({ String(cString: $0).contains("arena_max") }) != true
            else { return }
            // <malloc.h> is not in Swift's Glibc module: mallopt(M_ARENA_MAX = -8, 2) by name.
            typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
            guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
            _ = unsafeBitCast(symbol, to: Mallopt.self)(-8, 2)
        #endif
    }

    /// Raises the soft limit on open files to the hard limit; returns the limit now in force.
    @discardableResult
    static func raiseFileLimit() -> UInt64 {
        var limit = rlimit()
        #if canImport(Glibc)
            let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
            let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { return UInt64(raised.rlim_cur) }
        }
        return UInt64(limit.rlim_cur)
    }
}

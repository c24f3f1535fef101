import DataMesherCore

/// Content fetches as the network shell runs them, over the simulated network: each node's
/// `Fetcher` (the core's) decides what to fetch from whom on which stream; a stream here dials
/// the peer (refused when the handshake would fail, and at once when its node is down), and its
/// answers arrive one after another, each the version the peer holds when it answers. A stream
/// is cut with `streamCut` at every answer, and ends when its peer goes out of reach; its
/// unanswered requests then fail.
extension Simulation {
    /// Carries out node `index`'s fetcher steps.
    mutating func carryOut(_ steps: [Fetcher.Step], by index: Int) {
        for step in steps {
            switch step {
            case .open(let stream, let address, let requests):
                if idAt[address].map({ isDown[$0] }) ?? true {
                    // Nothing listens there (its node crashed, or no node has the address): the
                    // connection is refused, as the shell then tells its fetcher.
                    let epoch = epochs[index]
                    at(now + 2 * latency()) { sim in
                        guard !sim.isDown[index], sim.epochs[index] == epoch else { return }
                        sim.carryOut(
                            sim.fetchers[index].ended(stream, now: sim.localNow(index), unreachable: true), by: index)
                    }
                    continue
                }
                let peer = idAt[address].flatMap { handshake(index, $0) ? $0 : nil }
                push(
                    now + 2 * latency(),
                    .fetchReply(
                        node: index, epoch: epochs[index], stream: stream, peer: peer, request: 0, requests))
            case .commit(let version, let content, _):
                // The shell's path: every rule again (signature included) before storing.
                if refusal(of: version, on: index) != nil || diskFullAt[index] {
                    feed(index, .storeFailed(version))
                } else {
                    push(now, .stored(index, version, inline: version.isTombstone ? nil : content))
                }
            case .failed(let version):
                feed(index, .storeFailed(version))
            case .backingOff:
                break
            case .wake(let delay):
                let epoch = epochs[index]
                at(now + delay) { sim in
                    guard !sim.isDown[index], sim.epochs[index] == epoch else { return }
                    let members = sim.inspect(index) { $0.liveMemberAddresses }
                    sim.carryOut(sim.fetchers[index].woke(now: sim.localNow(index), members: members), by: index)
                }
            }
        }
    }

    /// The answer to request `number` of `requests` on `node`'s fetch stream `stream` arrives.
    mutating func answer(_ number: Int, of requests: [Fetcher.Request], on stream: Int, from peer: Int?, to node: Int) {
        guard let peer, reachable(node, peer), number < requests.count, !rng.chance(options.streamCut) else {
            carryOut(fetchers[node].ended(stream, now: localNow(node)), by: node)
            return
        }
        let outcome: Fetcher.Outcome
        if let offered = inspect(peer, { $0.files[requests[number].name] }), requests[number].accepts(offered) {
            bytesSent += Int(offered.contentLength) + 200
            if refusal(of: offered, on: node) != nil {
                outcome = .notStored
            } else if diskFullAt[node] {
                outcome = .noSpace(offered)
            } else {
                outcome = store(offered, inline: nil, on: node) ? .stored(offered) : .notStored
            }
        } else {
            outcome = .notHeld
        }
        carryOut(fetchers[node].answered(stream, outcome, now: localNow(node)), by: node)
        if number + 1 < requests.count {
            push(
                now + latency(),
                .fetchReply(
                    node: node, epoch: epochs[node], stream: stream, peer: peer, request: number + 1, requests))
        } else {
            carryOut(fetchers[node].ended(stream, now: localNow(node)), by: node)
        }
    }

    /// Why node `index` would refuse `version`, checked as the shell does before storing.
    mutating func refusal(of version: FileVersion, on index: Int) -> Refusal? {
        let local = localNow(index)
        let signatures = signatures
        return inspect(index) { core -> Refusal? in
            guard core.policy.allowedSigners[version.name] != nil else { return .nameNotConfigured(version.name) }
            return core.policy.evaluate(version, current: core.files[version.name], now: local, verifier: signatures)
        }
    }

    /// Stores `version` on node `index` if its disk has room and it is newer than what the node
    /// holds, and tells the core either way; true when stored.
    @discardableResult
    mutating func store(_ version: FileVersion, inline: [UInt8]?, on index: Int) -> Bool {
        if diskFullAt[index] {
            feed(index, .storeFailed(version))  // the disk filled while it was fetched
            return false
        }
        if let held = inspect(index, { $0.files[version.name] }), !VersionOrder.isNewer(version, than: held) {
            feed(index, .storeFailed(version))
            return false
        }
        onStored?(order[index], version, now)
        feed(index, .stored(version, inline: inline))
        return true
    }
}

import Logging
import Testing

@testable import DataMesherNet

/// `LogBudget`: how many lines of one kind a flood may write.
@Suite struct LogBudgetTests {
    @Test func aFloodGetsTheWindowsShareAndTheNextLineSaysHowManyWereLeftOut() {
        let budget = LogBudget(perWindow: 3, window: 10)
        #expect((0..<5).map { budget.admit(now: 100 + Int64($0)) } == [0, 0, 0, nil, nil])
        // The next window: one line, which counts the two left out.
        #expect(budget.admit(now: 110) == 2)
        #expect(budget.admit(now: 111) == 0)
    }

    @Test func theLineLetThroughAfterAFloodCarriesTheCountInItsMetadata() {
        let budget = LogBudget(perWindow: 1, window: 10)
        var first: Logger.Metadata = [:]
        #expect(budget.admit(now: 100, noting: &first) && first["dm.suppressed"] == nil)
        var skipped: Logger.Metadata = [:]
        #expect(!budget.admit(now: 101, noting: &skipped) && !budget.admit(now: 102, noting: &skipped))
        var next: Logger.Metadata = [:]
        #expect(budget.admit(now: 110, noting: &next) && next["dm.suppressed"] == "2")
    }

    @Test func aClockThatGoesBackStartsANewWindow() {
        let budget = LogBudget(perWindow: 1, window: 10)
        #expect(budget.admit(now: 100) == 0)
        #expect(budget.admit(now: 101) == nil)
        #expect(budget.admit(now: 50) == 1)
        #expect(budget.admit(now: .min) == 0)
        #expect(budget.admit(now: .max) == 0)
    }
}

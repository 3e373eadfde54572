"""`tuning.processes.seat.Seat` on its own: the succession of trial processes of a standalone search
or of one ``--workers`` worker, driven through random events (trials that grow the process,
hand-overs, crashes, standbys that die, memory that runs short) chosen by hypothesis."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tuning.errors import EXIT_RECYCLED as RECYCLE_EXIT
from tuning.processes.seat import STANDBY_AT, Seat


class FakeProcess:
    """The `ChildProcess` side of a fake trial process."""

    def __init__(self):
        self.returncode = None
        self.stops = 0

    def poll(self):
        return self.returncode

    def stop(self):
        self.stops += 1
        if self.returncode is None:
            self.returncode = -9


class FakeTrialProcess:
    """A `TrialProcess` whose memory, exit and standby state are set by the test."""

    def __init__(self, world, standby: bool):
        self.world, self.standby, self.process = world, standby, FakeProcess()
        self.waiting = standby  # a standby waits for go
        self.gos = self.closes = 0
        self.baseline, self.mb = None, 0.0
        self.standby_started_when_grown = None

    def go(self) -> bool:
        self.gos += 1
        if self.process.returncode is not None:
            return False
        assert self.waiting, "go sent to a process that is not waiting for it"
        self.waiting = False
        return True

    def grown(self) -> float:
        return 0.0 if self.baseline is None else self.mb

    def room_for_standby(self) -> bool:
        return self.world.room

    def close(self):
        self.closes += 1


class World:
    def __init__(self):
        self.room = True
        self.spawned: list[FakeTrialProcess] = []

    def spawn(self, standby: bool, continuing: bool = False) -> FakeTrialProcess:
        p = FakeTrialProcess(self, standby)
        self.spawned.append(p)
        return p


EVENTS = st.lists(st.tuples(st.sampled_from(["trial", "recycle", "crash", "standby dies", "memory", "tick"]),
                            st.floats(0, 80)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(events=EVENTS, recycle_mb=st.sampled_from([0, 50, 150]), first=st.sampled_from(["now", "standby"]),
       standbys=st.booleans())
def test_a_seat_always_has_one_running_process_and_uses_a_live_standby(events, recycle_mb, first, standbys):
    world = World()
    seat = Seat(world.spawn, recycle_mb, first=world.spawn(True) if first == "standby" else None, standbys=standbys)
    if not standbys:  # no core to spare for a standby: hand-overs start a fresh process
        recycle_mb = 0
    assert world.spawned == [seat.current] and seat.current.waiting == (first == "standby")
    seat.go()
    seat.go()  # a second go is a no-op
    assert not seat.current.waiting and seat.current.process.poll() is None

    for event, x in events:
        current, standby = seat.current, seat.standby
        if event == "trial":  # the current process ends a trial and has grown by x MB since its first
            current.baseline, current.mb = 100.0, current.mb + x
        elif event == "memory":
            world.room = x > 20
        elif event == "standby dies" and standby is not None:
            standby.process.returncode = 1
        elif event in ("recycle", "crash"):
            current.process.returncode = RECYCLE_EXIT if event == "recycle" else 1
            usable = standby is not None and standby.process.returncode is None
            before = len(world.spawned)
            new = seat.hand_over()
            assert new is seat.current and new is not current
            assert new.process.poll() is None and not new.waiting  # running, told go once at most
            assert new.gos <= 1
            if usable:  # a live standby goes on: no process is started cold
                assert new is standby and len(world.spawned) == before
            else:
                assert len(world.spawned) == before + 1 and not new.standby
            assert seat.standby is None
        elif event == "tick":
            seat.prepare_standby()
            if seat.standby is not None and seat.standby is not standby:  # started just now
                assert recycle_mb and world.room and current.grown() > STANDBY_AT * recycle_mb
                assert seat.standby.waiting and seat.standby in world.spawned
            elif standby is None:  # not started: not needed yet, or no room
                assert not recycle_mb or not world.room or current.grown() <= STANDBY_AT * recycle_mb
        # At most one standby, and every process other than the current one and the standby has exited.
        live = [p for p in world.spawned if p.process.poll() is None]
        assert seat.current in live
        assert set(map(id, live)) <= {id(seat.current), id(seat.standby)}
        assert all(p.waiting for p in live if p is not seat.current)
        if not recycle_mb:  # no hand-overs, or standbys turned off
            assert seat.standby is None

    waiting = seat.waiting
    seat.close()
    assert not waiting
    assert [p for p in world.spawned if p.process.poll() is None] == [seat.current]  # standbys are stopped
    assert all(p.closes == 1 for p in world.spawned)  # every outcome file is removed
    assert seat.current.process.stops == 0  # the running process is left to finish


def test_a_seat_whose_first_process_never_got_go_stops_it():
    world = World()
    seat = Seat(world.spawn, 150, first=world.spawn(True))
    seat.close()  # the chief did not start: the waiting worker is stopped with the rest
    assert world.spawned[0].process.poll() is not None and world.spawned[0].closes == 1


def test_go_to_a_first_process_that_died_starts_a_fresh_one():
    world = World()
    seat = Seat(world.spawn, 150, first=world.spawn(True))
    world.spawned[0].process.returncode = 1  # it failed while importing Keras
    seat.go()
    assert len(world.spawned) == 2 and seat.current is world.spawned[1] and not seat.current.waiting

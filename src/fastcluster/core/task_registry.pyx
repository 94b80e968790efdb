# asyncio's registry of live tasks, kept in C. Before Python 3.12 every Task is added to a WeakSet
# whose add() and whose removal callback (run when the task is freed) are Python functions: two Python
# frames for each request's task, about a tenth of what a hello-world ASGI request costs in user space.
# install() gives that WeakSet C versions of both that do the same thing on the same set, so
# asyncio.all_tasks() sees exactly what it saw before.
import asyncio.tasks
import sys
import weakref

from cpython.weakref cimport PyWeakref_NewRef


cdef class RemoveDead:
    """WeakSet._remove: forget a freed task's reference, or leave it for later while the set is iterated."""
    cdef set data
    cdef list pending_removals
    cdef set iterating

    def __call__(self, ref):
        if self.iterating:
            self.pending_removals.append(ref)
        else:
            self.data.discard(ref)


cdef class AddTask:
    """WeakSet.add for a task: a weak reference that RemoveDead forgets when the task is freed."""
    cdef object registry
    cdef set data
    cdef list pending_removals
    cdef RemoveDead remove_dead

    def __call__(self, task):
        if self.pending_removals:
            self.registry._commit_removals()
        self.data.add(PyWeakref_NewRef(task, self.remove_dead))


def install() -> bool:
    """Put the C versions on asyncio's task WeakSet; False (and nothing changed) where there is none."""
    registry = getattr(asyncio.tasks, "_all_tasks", None)
    if sys.version_info >= (3, 12) or type(registry) is not weakref.WeakSet:
        return False  # 3.12+ starts request tasks eagerly: most never reach the WeakSet
    if type(registry.__dict__.get("add")) is AddTask:
        return True
    cdef RemoveDead remove_dead = RemoveDead.__new__(RemoveDead)
    # WeakSet changes these three in place, never replaces them.
    remove_dead.data = registry.data
    remove_dead.pending_removals = registry._pending_removals
    remove_dead.iterating = registry._iterating
    cdef AddTask add = AddTask.__new__(AddTask)
    add.registry = registry
    add.data = registry.data
    add.pending_removals = registry._pending_removals
    add.remove_dead = remove_dead
    registry.add = add  # an instance attribute: the C Task's lookup of "add" finds it before WeakSet.add
    return True

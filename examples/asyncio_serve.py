"""Coroutines on your program's own event loop: ``await scheduler.serve()`` inside ``asyncio.run``.

    python examples/asyncio_serve.py
"""

import asyncio
import threading

from subminute import Scheduler

scheduler = Scheduler()
threads = set()


@scheduler.every("250ms", timeout=1)
async def fetch_vehicles(event):
    threads.add(threading.current_thread().name)
    await asyncio.sleep(0.05)  # an HTTP call with aiohttp or httpx.AsyncClient would go here
    return {"vehicles": 12}  # kept in the fire record's detail


async def main():
    loop = asyncio.get_running_loop()
    loop.call_later(2.0, scheduler.stop)  # any task, callback or thread may stop it
    await scheduler.serve()  # returns once stopped (or raises CancelledError if cancelled)
    row = scheduler.status()[0]
    print(f"{row['name']}: {row['fires']} fires, {row['errors']} errors, ran on {sorted(threads)}, "
          f"this loop's thread is {threading.current_thread().name}")
    print(f"last record: {scheduler.history('fetch_vehicles', limit=1)[0]['detail']}")


asyncio.run(main())

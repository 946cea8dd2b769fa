"""`stylecast serve` measured from outside: a bounded asyncio load client, the server process it runs against
(shared with the tests), and the page driven in headless Chromium."""

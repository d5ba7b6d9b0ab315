// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title PDash escrow v2
/// @notice Escrow for data trades between a buyer, a seller and one or two relay proxies,
///         with disputes ruled by a proxy and, on appeal, by an arbiter.
/// @dev Gas: an order costs two storage slots. The immutable terms are kept as a keccak
///      commitment and passed back as calldata by every caller (they are all in the
///      OrderPlaced event); the mutable status is packed into one slot.
///      Money rule (solvency): the balance always equals the sum of escrowed prices and
///      seller deposits of open orders, proxy deposits and deferred payouts.
contract PdashEscrow {
    // ----------------------------------------------------------------- types
    enum State {
        Created, //           0: buyer paid the price
        SellerConfirmed, //   1: seller deposited the price
        ProxyFetched, //      2: proxy holds the verified ciphertext
        ProxyDelivered, //    3: proxy served every byte to the buyer
        Finished, //          4: sale completed (buyer confirmed or seller timeout)
        Disputed, //          5: buyer disputed the delivery
        Settled, //           6: dispute settled by a verdict
        Withdrawn //          7: refunded (withdrawal, timeout, or unruled dispute)
    }

    /// @notice Terms fixed when the order is placed; callers pass them back.
    struct Order {
        address buyer;
        address seller;
        address proxy;
        address proxy2;
        uint96 price;
        uint96 fee;
        bytes32 descHash;
        bytes32 dataHash;
        bytes32 buyerKey;
    }

    /// @dev One storage slot: 8+40+40+8 bits and six flags.
    struct Status {
        State state;
        uint40 endTime; // order deadline (extended to give the buyer a confirm window)
        uint40 disputeEnd; // end of the agreement window, once disputed
        uint8 verdict; // 0 none, 1 buyer at fault, 2 seller at fault
        bool buyerAgreed;
        bool sellerAgreed;
        bool appealed; // a party rejected the proxy's verdict
        bool buyerRated;
        bool sellerRated;
    }

    struct ProxyAccount {
        uint128 deposit;
        uint64 unlockAt; // 0: bonded; otherwise withdrawable from this time on
    }

    struct ProxyRating {
        uint128 sum;
        uint128 count;
    }

    uint8 internal constant VERDICT_NONE = 0;
    uint8 internal constant BUYER_AT_FAULT = 1;
    uint8 internal constant SELLER_AT_FAULT = 2;

    // ----------------------------------------------------------------- storage
    address public arbiter;
    uint64 public numOrders;
    address public pendingArbiter;

    uint256 public immutable minProxyDeposit;
    uint256 public immutable minTimeAllowed;
    uint256 public immutable maxTimeAllowed;
    uint256 public immutable confirmWindow;
    uint256 public immutable disputeWindow;
    uint256 public immutable arbiterWindow;

    mapping(uint256 => bytes32) public orderCommitment;
    mapping(uint256 => Status) public orderStatus;
    mapping(address => ProxyAccount) public proxyAccounts;
    mapping(address => ProxyRating) public proxyRatings;
    mapping(address => uint256) public deferredPayouts;

    // ----------------------------------------------------------------- events
    event OrderPlaced(
        uint256 indexed id,
        address indexed buyer,
        address indexed seller,
        address proxy,
        address proxy2,
        uint256 price,
        uint256 fee,
        bytes32 descHash,
        bytes32 dataHash,
        bytes32 buyerKey,
        uint256 endTime
    );
    event SellerConfirmed(uint256 indexed id, address indexed seller, uint256 deposit);
    event ProxyFetched(uint256 indexed id, address indexed proxy);
    event ProxyDelivered(uint256 indexed id, address indexed proxy, bytes32 deliverHash, uint256 confirmDeadline);
    event BuyerConfirmed(uint256 indexed id, address indexed buyer);
    event OrderWithdrawn(uint256 indexed id, address indexed by, uint8 fromState);
    event OrderTimedOut(uint256 indexed id, address indexed by, uint8 fromState, uint8 toState);
    event BuyerDisputed(uint256 indexed id, address indexed buyer, uint256 disputeEnd);
    event ProxyRuled(uint256 indexed id, address indexed proxy, uint8 verdict);
    event VerdictAnswered(uint256 indexed id, address indexed party, bool agree);
    event ArbiterRuled(uint256 indexed id, address indexed arbiter, uint8 verdict, bool proxyAtFault);
    event DisputeSettled(uint256 indexed id, uint8 verdict, bool proxyAtFault);
    event ProxyRated(uint256 indexed id, address indexed rater, address indexed proxy, uint8 rating);
    event ProxyDeposited(address indexed proxy, uint256 amount, uint256 total);
    event ProxyWithdrawRequested(address indexed proxy, uint256 unlockAt);
    event ProxyWithdrawn(address indexed proxy, uint256 amount, uint256 remaining);
    event ProxySlashed(uint256 indexed id, address indexed proxy, uint256 amount);
    event PayoutDeferred(address indexed to, uint256 amount);
    event PayoutClaimed(address indexed to, uint256 amount);
    event ArbiterProposed(address indexed current, address indexed proposed);
    event ArbiterChanged(address indexed previous, address indexed current);

    // ----------------------------------------------------------------- errors
    /// @dev Reasons are short strings so every client can decode them the same way.
    error Refused(string reason);

    constructor(
        address arbiter_,
        uint256 minProxyDeposit_,
        uint256 minTimeAllowed_,
        uint256 maxTimeAllowed_,
        uint256 confirmWindow_,
        uint256 disputeWindow_,
        uint256 arbiterWindow_
    ) {
        if (arbiter_ == address(0)) revert Refused("zero arbiter");
        if (minTimeAllowed_ == 0 || minTimeAllowed_ > maxTimeAllowed_) revert Refused("bad time bounds");
        if (maxTimeAllowed_ > type(uint32).max) revert Refused("bad time bounds");
        if (confirmWindow_ == 0 || disputeWindow_ == 0 || arbiterWindow_ == 0) revert Refused("bad windows");
        if (confirmWindow_ > type(uint32).max || disputeWindow_ > type(uint32).max) revert Refused("bad windows");
        if (arbiterWindow_ > type(uint32).max) revert Refused("bad windows");
        arbiter = arbiter_;
        minProxyDeposit = minProxyDeposit_;
        minTimeAllowed = minTimeAllowed_;
        maxTimeAllowed = maxTimeAllowed_;
        confirmWindow = confirmWindow_;
        disputeWindow = disputeWindow_;
        arbiterWindow = arbiterWindow_;
    }

    // ----------------------------------------------------------------- order lifecycle

    /// @notice Buyer pays `msg.value` as the price for the data described by `descHash`.
    function placeOrder(
        bytes32 descHash,
        bytes32 dataHash,
        bytes32 buyerKey,
        address seller,
        address proxy,
        address proxy2,
        uint96 fee,
        uint32 timeAllowed
    ) external payable returns (uint256 id) {
        if (seller == address(0) || proxy == address(0) || proxy2 == address(0)) revert Refused("zero address");
        if (seller == msg.sender) revert Refused("buyer is seller");
        if (proxy == msg.sender || proxy == seller || proxy2 == msg.sender || proxy2 == seller) {
            revert Refused("proxy is a party");
        }
        if (msg.value > type(uint96).max) revert Refused("price too large");
        if (msg.value <= 2 * uint256(fee)) revert Refused("price must exceed twice the fee");
        if (timeAllowed < minTimeAllowed || timeAllowed > maxTimeAllowed) revert Refused("time allowed out of bounds");
        if (dataHash == bytes32(0)) revert Refused("zero data hash");
        if (buyerKey == bytes32(0)) revert Refused("zero buyer key");
        _requireBondedProxy(proxy);
        if (proxy2 != proxy) _requireBondedProxy(proxy2);

        id = uint256(++numOrders);
        Order memory o = Order(msg.sender, seller, proxy, proxy2, uint96(msg.value), fee, descHash, dataHash, buyerKey);
        orderCommitment[id] = keccak256(abi.encode(o));
        uint40 endTime = uint40(block.timestamp + timeAllowed);
        orderStatus[id] = Status(State.Created, endTime, 0, VERDICT_NONE, false, false, false, false, false);
        emit OrderPlaced(id, msg.sender, seller, proxy, proxy2, msg.value, fee, descHash, dataHash, buyerKey, endTime);
    }

    /// @notice Seller accepts the order by depositing the price (returned on a normal sale).
    function sellerConfirm(uint256 id, Order calldata o) external payable {
        Status storage s = _load(id, o);
        _onlySeller(o);
        _inState(s, State.Created);
        _before(s.endTime);
        if (msg.value != o.price) revert Refused("deposit must equal price");
        s.state = State.SellerConfirmed;
        emit SellerConfirmed(id, msg.sender, msg.value);
    }

    /// @notice Buyer cancels before the proxy fetched the data: everyone gets their money back.
    function buyerWithdraw(uint256 id, Order calldata o) external {
        Status storage s = _load(id, o);
        if (msg.sender != o.buyer) revert Refused("only buyer");
        State from = s.state;
        if (from != State.Created && from != State.SellerConfirmed) revert Refused("wrong state");
        _before(s.endTime);
        s.state = State.Withdrawn;
        emit OrderWithdrawn(id, msg.sender, uint8(from));
        _pay(o.buyer, o.price);
        if (from == State.SellerConfirmed) _pay(o.seller, o.price);
    }

    /// @notice A proxy reports it fetched the seller's data and verified its hash.
    function proxyFetched(uint256 id, Order calldata o) external {
        Status storage s = _load(id, o);
        _onlyProxy(o);
        _inState(s, State.SellerConfirmed);
        _before(s.endTime);
        s.state = State.ProxyFetched;
        emit ProxyFetched(id, msg.sender);
    }

    /// @notice A proxy reports it served the whole ciphertext; its hash must be the committed one.
    function proxyDelivered(uint256 id, Order calldata o, bytes32 deliverHash) external {
        Status storage s = _load(id, o);
        _onlyProxy(o);
        _inState(s, State.ProxyFetched);
        _before(s.endTime);
        if (deliverHash != o.dataHash) revert Refused("deliver hash mismatch");
        s.state = State.ProxyDelivered;
        uint256 confirmBy = block.timestamp + confirmWindow;
        if (confirmBy > s.endTime) s.endTime = uint40(confirmBy);
        emit ProxyDelivered(id, msg.sender, deliverHash, s.endTime);
    }

    /// @notice Buyer accepts the delivery: seller gets its deposit and the price less fees.
    function buyerConfirmDeliver(uint256 id, Order calldata o) external {
        Status storage s = _load(id, o);
        if (msg.sender != o.buyer) revert Refused("only buyer");
        _inState(s, State.ProxyDelivered);
        _before(s.endTime);
        s.state = State.Finished;
        emit BuyerConfirmed(id, msg.sender);
        _paySale(o);
    }

    /// @notice Buyer rejects the delivery inside the order window; the proxy rules first.
    function buyerDispute(uint256 id, Order calldata o) external {
        Status storage s = _load(id, o);
        if (msg.sender != o.buyer) revert Refused("only buyer");
        _inState(s, State.ProxyDelivered);
        _before(s.endTime);
        s.state = State.Disputed;
        uint40 disputeEnd = uint40(block.timestamp + disputeWindow);
        s.disputeEnd = disputeEnd;
        emit BuyerDisputed(id, msg.sender, disputeEnd);
    }

    /// @notice A proxy gives its verdict once; it cannot be changed afterwards.
    function proxyProcessDispute(uint256 id, Order calldata o, bool sellerAtFault) external {
        Status storage s = _load(id, o);
        _onlyProxy(o);
        _inState(s, State.Disputed);
        _before(s.disputeEnd);
        if (s.verdict != VERDICT_NONE) revert Refused("verdict already given");
        uint8 verdict = sellerAtFault ? SELLER_AT_FAULT : BUYER_AT_FAULT;
        s.verdict = verdict;
        emit ProxyRuled(id, msg.sender, verdict);
    }

    /// @notice Buyer or seller accepts or rejects the proxy's verdict inside the window.
    /// @dev Both accepting settles at once; a rejection lets the arbiter rule early.
    function answerVerdict(uint256 id, Order calldata o, bool agree) external {
        Status storage s = _load(id, o);
        _inState(s, State.Disputed);
        _before(s.disputeEnd);
        if (s.verdict == VERDICT_NONE) revert Refused("no verdict yet");
        if (msg.sender == o.buyer) {
            if (s.buyerAgreed) revert Refused("already agreed");
            if (agree) s.buyerAgreed = true;
        } else if (msg.sender == o.seller) {
            if (s.sellerAgreed) revert Refused("already agreed");
            if (agree) s.sellerAgreed = true;
        } else {
            revert Refused("only buyer or seller");
        }
        if (!agree) s.appealed = true;
        emit VerdictAnswered(id, msg.sender, agree);
        if (s.buyerAgreed && s.sellerAgreed) _settle(id, o, s, s.verdict, false);
    }

    /// @notice The arbiter rules on an appealed or unresolved dispute, within its window.
    function arbiterRule(uint256 id, Order calldata o, bool sellerAtFault, bool proxyAtFault) external {
        Status storage s = _load(id, o);
        if (msg.sender != arbiter) revert Refused("only arbiter");
        if (msg.sender == o.buyer || msg.sender == o.seller || msg.sender == o.proxy || msg.sender == o.proxy2) {
            revert Refused("arbiter is a party");
        }
        _inState(s, State.Disputed);
        uint256 disputeEnd = s.disputeEnd;
        if (!s.appealed && block.timestamp < disputeEnd) revert Refused("agreement window open");
        if (block.timestamp >= disputeEnd + arbiterWindow) revert Refused("arbiter window closed");
        uint8 verdict = sellerAtFault ? SELLER_AT_FAULT : BUYER_AT_FAULT;
        emit ArbiterRuled(id, msg.sender, verdict, proxyAtFault);
        _settle(id, o, s, verdict, proxyAtFault);
    }

    /// @notice The exit of every open state once its deadline has passed (buyer or seller).
    /// @dev Created: refund the buyer. SellerConfirmed/ProxyFetched: refund both.
    ///      ProxyDelivered: the sale completes. Disputed (after the arbiter's window):
    ///      the proxy's verdict stands, or both are refunded when there is none.
    function claimTimeout(uint256 id, Order calldata o) external {
        Status storage s = _load(id, o);
        if (msg.sender != o.buyer && msg.sender != o.seller) revert Refused("only buyer or seller");
        State from = s.state;
        if (from == State.Disputed) {
            if (block.timestamp < uint256(s.disputeEnd) + arbiterWindow) revert Refused("deadline not reached");
            if (s.verdict != VERDICT_NONE) {
                emit OrderTimedOut(id, msg.sender, uint8(from), uint8(State.Settled));
                _settle(id, o, s, s.verdict, false);
                return;
            }
            s.state = State.Withdrawn;
            emit OrderTimedOut(id, msg.sender, uint8(from), uint8(State.Withdrawn));
            _pay(o.buyer, o.price);
            _pay(o.seller, o.price);
            return;
        }
        if (block.timestamp < s.endTime) revert Refused("deadline not reached");
        if (from == State.Created) {
            s.state = State.Withdrawn;
            emit OrderTimedOut(id, msg.sender, uint8(from), uint8(State.Withdrawn));
            _pay(o.buyer, o.price);
        } else if (from == State.SellerConfirmed || from == State.ProxyFetched) {
            s.state = State.Withdrawn;
            emit OrderTimedOut(id, msg.sender, uint8(from), uint8(State.Withdrawn));
            _pay(o.buyer, o.price);
            _pay(o.seller, o.price);
        } else if (from == State.ProxyDelivered) {
            s.state = State.Finished;
            emit OrderTimedOut(id, msg.sender, uint8(from), uint8(State.Finished));
            _paySale(o);
        } else {
            revert Refused("wrong state");
        }
    }

    /// @notice Buyer or seller rates the proxies of a completed sale, once each (1..5).
    function rateProxy(uint256 id, Order calldata o, uint8 rating) external {
        Status storage s = _load(id, o);
        _inState(s, State.Finished);
        if (rating < 1 || rating > 5) revert Refused("rating out of range");
        if (msg.sender == o.buyer) {
            if (s.buyerRated) revert Refused("already rated");
            s.buyerRated = true;
        } else if (msg.sender == o.seller) {
            if (s.sellerRated) revert Refused("already rated");
            s.sellerRated = true;
        } else {
            revert Refused("only buyer or seller");
        }
        _rate(id, o.proxy, rating);
        if (o.proxy2 != o.proxy) _rate(id, o.proxy2, rating);
    }

    // ----------------------------------------------------------------- proxies

    /// @notice Bond (more) stake as a proxy; cancels a pending withdrawal.
    function proxyDeposit() external payable {
        if (msg.value == 0) revert Refused("zero deposit");
        ProxyAccount storage a = proxyAccounts[msg.sender];
        uint256 total = uint256(a.deposit) + msg.value;
        if (total > type(uint128).max) revert Refused("deposit too large");
        a.deposit = uint128(total);
        a.unlockAt = 0;
        emit ProxyDeposited(msg.sender, msg.value, total);
    }

    /// @notice Start unbonding: no new orders; withdrawable once every order it could be
    ///         slashed for has run out.
    function proxyRequestWithdraw() external {
        ProxyAccount storage a = proxyAccounts[msg.sender];
        if (a.deposit == 0) revert Refused("no deposit");
        if (a.unlockAt != 0) revert Refused("withdrawal already requested");
        uint256 unlockAt = block.timestamp + unbondingPeriod();
        a.unlockAt = uint64(unlockAt);
        emit ProxyWithdrawRequested(msg.sender, unlockAt);
    }

    function proxyWithdraw(uint256 amount) external {
        ProxyAccount storage a = proxyAccounts[msg.sender];
        if (a.unlockAt == 0) revert Refused("withdrawal not requested");
        if (block.timestamp < a.unlockAt) revert Refused("deposit still bonded");
        if (amount == 0 || amount > a.deposit) revert Refused("bad amount");
        a.deposit -= uint128(amount);
        emit ProxyWithdrawn(msg.sender, amount, a.deposit);
        _send(msg.sender, amount);
    }

    /// @notice Longest time a proxy can still be slashed for an order accepted before unbonding.
    function unbondingPeriod() public view returns (uint256) {
        return maxTimeAllowed + confirmWindow + disputeWindow + arbiterWindow;
    }

    // ----------------------------------------------------------------- payouts and arbiter

    /// @notice Collect payouts that could not be pushed (e.g. a contract that rejected them).
    function claimDeferred() external {
        uint256 amount = deferredPayouts[msg.sender];
        if (amount == 0) revert Refused("nothing to claim");
        deferredPayouts[msg.sender] = 0;
        emit PayoutClaimed(msg.sender, amount);
        _send(msg.sender, amount);
    }

    function proposeArbiter(address next) external {
        if (msg.sender != arbiter) revert Refused("only arbiter");
        if (next == address(0)) revert Refused("zero address");
        pendingArbiter = next;
        emit ArbiterProposed(msg.sender, next);
    }

    function acceptArbiter() external {
        if (msg.sender != pendingArbiter) revert Refused("only proposed arbiter");
        emit ArbiterChanged(arbiter, msg.sender);
        arbiter = msg.sender;
        pendingArbiter = address(0);
    }

    // ----------------------------------------------------------------- internals

    function _load(uint256 id, Order calldata o) internal view returns (Status storage s) {
        if (orderCommitment[id] != keccak256(abi.encode(o))) revert Refused("unknown order or wrong terms");
        return orderStatus[id];
    }

    function _onlySeller(Order calldata o) internal view {
        if (msg.sender != o.seller) revert Refused("only seller");
    }

    function _onlyProxy(Order calldata o) internal view {
        if (msg.sender != o.proxy && msg.sender != o.proxy2) revert Refused("only proxy");
    }

    function _inState(Status storage s, State expected) internal view {
        if (s.state != expected) revert Refused("wrong state");
    }

    function _before(uint256 deadline) internal view {
        if (block.timestamp >= deadline) revert Refused("deadline passed");
    }

    function _requireBondedProxy(address proxy) internal view {
        ProxyAccount storage a = proxyAccounts[proxy];
        if (a.deposit < minProxyDeposit || a.deposit == 0) revert Refused("proxy deposit too small");
        if (a.unlockAt != 0) revert Refused("proxy is unbonding");
    }

    /// @dev Normal sale: the seller gets its deposit back plus the price less both fees.
    function _paySale(Order calldata o) internal {
        uint256 fee = o.fee;
        _pay(o.seller, 2 * uint256(o.price) - 2 * fee);
        _payProxies(o, fee);
    }

    function _payProxies(Order calldata o, uint256 fee) internal {
        if (fee == 0) return;
        if (o.proxy == o.proxy2) {
            _pay(o.proxy, 2 * fee);
        } else {
            _pay(o.proxy, fee);
            _pay(o.proxy2, fee);
        }
    }

    /// @dev The order holds 2P. The party in the right gets 2P - 2F and the proxies F each;
    ///      a proxy at fault earns nothing and loses up to F of its deposit to that party.
    function _settle(uint256 id, Order calldata o, Status storage s, uint8 verdict, bool proxyAtFault) internal {
        s.state = State.Settled;
        s.verdict = verdict;
        emit DisputeSettled(id, verdict, proxyAtFault);
        address winner = verdict == SELLER_AT_FAULT ? o.buyer : o.seller;
        uint256 held = 2 * uint256(o.price);
        uint256 fee = o.fee;
        if (!proxyAtFault) {
            _pay(winner, held - 2 * fee);
            _payProxies(o, fee);
            return;
        }
        uint256 slashed = _slash(id, o.proxy, fee);
        if (o.proxy2 != o.proxy) slashed += _slash(id, o.proxy2, fee);
        _pay(winner, held + slashed);
    }

    function _slash(uint256 id, address proxy, uint256 amount) internal returns (uint256 taken) {
        ProxyAccount storage a = proxyAccounts[proxy];
        taken = amount < a.deposit ? amount : a.deposit;
        if (taken == 0) return 0;
        a.deposit -= uint128(taken);
        emit ProxySlashed(id, proxy, taken);
    }

    function _rate(uint256 id, address proxy, uint8 rating) internal {
        ProxyRating storage r = proxyRatings[proxy];
        r.sum += rating;
        r.count += 1;
        emit ProxyRated(id, msg.sender, proxy, rating);
    }

    /// @dev Push with the 2300-gas stipend (no re-entrancy possible); a recipient that
    ///      rejects it is credited instead, so one bad recipient cannot block an order.
    function _pay(address to, uint256 amount) internal {
        if (amount == 0) return;
        (bool ok,) = payable(to).call{value: amount, gas: 0}("");
        if (!ok) {
            deferredPayouts[to] += amount;
            emit PayoutDeferred(to, amount);
        }
    }

    /// @dev Full-gas send for withdrawals the caller asked for; state is updated first.
    function _send(address to, uint256 amount) internal {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert Refused("transfer failed");
    }
}

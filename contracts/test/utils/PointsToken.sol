// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice A plain ERC-20 whose owner mints: points as a token, one mint per purchase. It is the
/// per-entry on-chain design that script/AnchorGas.s.sol measures beside LedgerAnchor, not part
/// of the protocol. Whole points (no decimals); the owner is immutable, so a mint reads no owner
/// slot and touches only the recipient's balance and the total supply.
contract PointsToken {
    /// @notice The caller is not the owner.
    error NotOwner(address caller);
    /// @notice Minting or sending to the zero address.
    error ZeroAddress();
    /// @notice The sender holds less than the amount.
    error InsufficientBalance(address from, uint256 balance, uint256 amount);
    /// @notice The spender's allowance is less than the amount.
    error InsufficientAllowance(address spender, uint256 allowance, uint256 amount);

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    string public constant name = "pointsledger points";
    string public constant symbol = "PTS";
    uint8 public constant decimals = 0;

    /// @notice The account allowed to mint.
    address public immutable owner;
    uint256 public totalSupply;
    mapping(address account => uint256) public balanceOf;
    mapping(address account => mapping(address spender => uint256)) public allowance;

    constructor(address initialOwner) {
        if (initialOwner == address(0)) revert ZeroAddress();
        owner = initialOwner;
    }

    /// @notice Credits `amount` new points to `to`. Owner only.
    function mint(address to, uint256 amount) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        if (to == address(0)) revert ZeroAddress();
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount; // cannot overflow: no balance exceeds totalSupply
        }
        emit Transfer(address(0), to, amount);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        _transfer(msg.sender, to, amount);
        return true;
    }

    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(msg.sender, allowed, amount);
            unchecked {
                allowance[from][msg.sender] = allowed - amount;
            }
        }
        _transfer(from, to, amount);
        return true;
    }

    function _transfer(address from, address to, uint256 amount) private {
        if (to == address(0)) revert ZeroAddress();
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance(from, balance, amount);
        unchecked {
            balanceOf[from] = balance - amount;
            balanceOf[to] += amount; // cannot overflow: the sum of balances is totalSupply
        }
        emit Transfer(from, to, amount);
    }
}
